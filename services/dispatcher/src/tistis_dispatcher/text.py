"""Splitting a text that is too long for one platform message: on sentence boundaries, never a
silent truncation. Every character of the original reaches the patient, in order."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (optionally followed by closing quotes/brackets) before whitespace,
# or at a blank line.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”»)\]]))\s+|\n{2,}")
_SPACE = re.compile(r"\s+")


class TooLong(Exception):
    """The text would need more parts than allowed; the caller refuses it with a clear status."""


def _pieces(text: str, limit: int) -> list[str]:
    """Sentences, each cut on spaces (and, for one endless word, hard) to fit the limit."""
    out: list[str] = []
    for sentence in (s for s in _SENTENCE_END.split(text) if s and s.strip()):
        if len(sentence) <= limit:
            out.append(sentence.strip())
            continue
        for word in (w for w in _SPACE.split(sentence) if w):
            while len(word) > limit:  # a URL or a token longer than a whole message
                out.append(word[:limit])
                word = word[limit:]
            out.append(word)
    return out


def split_text(text: str, limit: int, max_parts: int) -> list[str]:
    """[text] when it fits; otherwise parts of at most `limit` characters, split between
    sentences where possible. Raises TooLong when more than `max_parts` would be needed."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            parts.append(current)
            current = piece
    if current:
        parts.append(current)
    if len(parts) > max_parts:
        raise TooLong(f"{len(text)} characters need {len(parts)} messages (at most {max_parts})")
    return parts
