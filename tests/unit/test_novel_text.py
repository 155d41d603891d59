"""Cutting a novel file into chapters and chapter events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import ChapterCreated, ChapterUpdated, parse_event
from streams.commands.novel_text import ChapterText, chapter_events, chapter_id, split_chapters

SAMPLE = Path(__file__).resolve().parents[2] / "streams" / "samples" / "xiyouji-1-10.txt"
NUMERALS = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"]
WHEN = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def test_sample_has_ten_chapters_in_order(sample: str) -> None:
    chapters = split_chapters(sample)
    assert len(chapters) == 10
    assert [c.number for c in chapters] == list(range(1, 11))
    for chapter, numeral in zip(chapters, NUMERALS, strict=True):
        assert chapter.title.startswith(f"第{numeral}回"), chapter.title
        assert len(chapter.text) > 1000
        assert chapter.text == chapter.text.strip()
        assert not chapter.text.startswith("第")  # the heading is not part of the body
    assert chapters[0].title == "第一回 灵根育孕源流出 心性修持大道生"
    assert "上卷" not in chapters[0].title  # the volume label is dropped
    assert "\u3000" not in chapters[0].title
    assert "西游记 / 吴承恩" not in chapters[0].text  # front matter is dropped


def test_sample_chapters_keep_all_the_prose(sample: str) -> None:
    chapters = split_chapters(sample)
    for chapter in chapters:
        assert chapter.text in sample
    assert "美猴王" in chapters[1].text
    assert chapters[-1].text.endswith(sample.rstrip()[-20:])


def test_english_chapter_headings() -> None:
    text = (
        "A Tale\nby Someone\n\n"
        "Chapter 1: The Start\nIt began. Then more.\n\n"
        "  CHAPTER IV\nFourth, oddly.\n"
        "chapter 12 The End\nDone.\n"
    )
    chapters = split_chapters(text)
    assert chapters == [
        ChapterText(1, "Chapter 1: The Start", "It began. Then more."),
        ChapterText(2, "CHAPTER IV", "Fourth, oddly."),
        ChapterText(3, "chapter 12 The End", "Done."),
    ]


def test_chinese_chapter_headings_of_several_forms() -> None:
    text = "第1章 开始\n正文一。\n\u3000\u3000第二十三回 中间\n正文二。\n第一百节\n正文三。"
    chapters = split_chapters(text)
    assert [c.title for c in chapters] == ["第1章 开始", "第二十三回 中间", "第一百节"]
    assert [c.text for c in chapters] == ["正文一。", "正文二。", "正文三。"]


def test_heading_words_inside_a_line_do_not_split() -> None:
    text = "Chapter 1\nHe read the chapter 2 notes. 他说第二回更好。\n"
    chapters = split_chapters(text)
    assert len(chapters) == 1
    assert "chapter 2 notes" in chapters[0].text


def test_text_without_headings_is_one_chapter() -> None:
    assert split_chapters("\n  Just a story.\nTwo lines.  \n") == [
        ChapterText(1, "", "Just a story.\nTwo lines.")
    ]


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_empty_text_has_no_chapters(text: str) -> None:
    assert split_chapters(text) == []


def test_chapter_ids() -> None:
    assert chapter_id(1) == "ch0001"
    assert chapter_id(123) == "ch0123"
    assert sorted(chapter_id(n) for n in (10, 2, 1)) == ["ch0001", "ch0002", "ch0010"]


def test_chapter_events_are_created_events_with_deterministic_ids(sample: str) -> None:
    chapters = split_chapters(sample)
    first = chapter_events("xiyouji", chapters, now=WHEN)
    again = chapter_events("xiyouji", chapters, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert len(first) == 10
    assert all(type(e) is ChapterCreated for e in first)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == 10
    assert [e.chapter_id for e in first] == [chapter_id(n) for n in range(1, 11)]
    assert all(e.version == 1 and e.novel_id == "xiyouji" for e in first)
    assert first[0].title == chapters[0].title and first[0].text == chapters[0].text
    assert first[0].occurred_at == WHEN


def test_event_ids_change_with_novel_version_and_text() -> None:
    chapters = [ChapterText(1, "t", "body")]
    base = chapter_events("n", chapters)[0].event_id
    assert chapter_events("m", chapters)[0].event_id != base
    assert chapter_events("n", chapters, version=2)[0].event_id != base
    assert chapter_events("n", [ChapterText(1, "t", "body!")])[0].event_id != base
    assert chapter_events("n", [ChapterText(2, "t", "body")])[0].event_id != base


def test_later_versions_are_updated_events() -> None:
    events = chapter_events("n", [ChapterText(1, "t", "a"), ChapterText(2, "u", "b")], version=3)
    assert all(type(e) is ChapterUpdated for e in events)
    assert all(e.version == 3 and e.event_type == "chapter.updated" for e in events)


def test_default_occurred_at_is_aware_now() -> None:
    before = datetime.now(UTC)
    (event,) = chapter_events("n", [ChapterText(1, "t", "a")])
    assert before <= event.occurred_at <= datetime.now(UTC)


def test_chapter_events_round_trip_through_the_contract(sample: str) -> None:
    for event in chapter_events("xiyouji", split_chapters(sample)[:3], now=WHEN):
        assert parse_event(json.dumps(event.model_dump(mode="json")).encode()) == event
