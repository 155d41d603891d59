"""The bench's split of a flow run's time into task runs and the gaps between them."""

from __future__ import annotations

from bench.pipeline import flow_parts


def test_a_flow_run_splits_into_its_tasks_and_the_gaps_between_them() -> None:
    spans = {
        "read event": (10.1, 10.2),
        "chunk": (10.25, 10.3),
        "embed": (10.8, 18.8),
        "publish": (18.9, 19.0),
    }
    parts = flow_parts(10.0, 19.5, spans)
    assert parts["gap_before_read_event_s"] == 0.1
    assert parts["read_event_task_s"] == 0.1
    assert parts["gap_before_embed_s"] == 0.5  # the index lookup and the task's creation
    assert parts["embed_task_s"] == 8.0
    assert parts["gap_after_s"] == 0.5
    total = sum(v for v in parts.values() if v is not None)
    assert round(total, 3) == 9.5  # every second of the run is in exactly one part


def test_a_missing_task_leaves_its_parts_unknown_and_the_next_gap_spans_it() -> None:
    parts = flow_parts(0.0, 3.0, {"chunk": (0.5, 1.0), "embed": (1.5, 2.5)})
    assert parts["read_event_task_s"] is None
    assert parts["gap_before_read_event_s"] is None
    assert parts["gap_before_chunk_s"] == 0.5
    assert parts["publish_task_s"] is None
    assert parts["gap_after_s"] == 0.5
