"""Text from the event log, made inert inside the markdown of a flow run's artifact.

Titles, chapter text and ids come from whoever may write ``novel-events``; the Prefect UI
renders the artifact as markdown for the operators who open it. :func:`escape_markdown`
turns such text into literal characters: no HTML, no link or image (nothing loads or
navigates), no emphasis or code span, no table cell or line break of its own.
"""

from __future__ import annotations

import string

#: HTML's special characters become entities (no tag, autolink or entity can start).
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
#: Every other ASCII punctuation character is backslash-escaped: CommonMark renders an
#: escaped punctuation character literally, whatever it would have started.
_ESCAPED = frozenset(string.punctuation) - set(_ENTITIES)


def escape_markdown(text: str) -> str:
    """``text`` as literal inline markdown, on one line (line breaks and other control
    characters become spaces, so it cannot end a table row or start a block)."""
    out: list[str] = []
    for char in text:
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char in _ESCAPED:
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(" ")
    return "".join(out)
