"""The terms of a query and where they occur in a passage (for highlighting).

Terms come from ``jieba``, the tokenizer that fills the index's BM25 field, in its search
mode (long words and their parts): what BM25 matched is what the reader sees marked.
Single characters and punctuation are not highlighted (they match everywhere).
"""

from __future__ import annotations

import logging
import unicodedata
import warnings
from collections.abc import Sequence

#: Terms of a query kept, at most.
MAX_TERMS = 32


def _is_word(token: str) -> bool:
    return len(token) >= 2 and any(unicodedata.category(ch)[0] in "LN" for ch in token)


def query_terms(query: str) -> list[str]:
    """The distinct words of ``query`` (two characters or more), longest first."""
    with warnings.catch_warnings():  # jieba 0.42 imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        import jieba

    jieba.setLogLevel(logging.WARNING)
    seen: dict[str, None] = {}
    for token in jieba.cut_for_search(query):
        token = token.strip()
        if _is_word(token):
            seen.setdefault(token.lower(), None)
    return sorted(seen, key=lambda t: (-len(t), t))[:MAX_TERMS]


def term_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Where ``terms`` occur in ``text``: sorted, non-overlapping ``(start, end)`` spans
    (case ignored where that keeps offsets; overlapping matches merged)."""
    haystack = text.lower() if len(text.lower()) == len(text) else text
    spans: list[tuple[int, int]] = []
    for term in terms:
        start = haystack.find(term)
        while start >= 0:
            spans.append((start, start + len(term)))
            start = haystack.find(term, start + len(term))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
