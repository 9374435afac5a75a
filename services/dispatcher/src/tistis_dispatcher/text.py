"""Splitting a text that is too long for one platform message: on sentence boundaries, never a
silent truncation. Every character of the original reaches the patient, in order.

Each platform counts its limit its own way (`size`): Instagram 1,000 UTF-8 bytes (an emoji is
4, an accented letter 2: developers.facebook.com/docs/instagram-platform/
instagram-api-with-instagram-login/messaging-api, "text ... must be UTF-8 and less than 1000
bytes"), Messenger 2,000 characters, WhatsApp 4,096 characters, TikTok 6,000 characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Size = Callable[[str], int]


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))

# A sentence ends at . ! ? … (optionally followed by closing quotes/brackets) before whitespace,
# or at a blank line.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”»)\]]))\s+|\n{2,}")
_SPACE = re.compile(r"\s+")


class TooLong(Exception):
    """The text would need more parts than allowed; the caller refuses it with a clear status."""


def _hard_cut(word: str, limit: int, size: Size) -> int:
    """How many characters of `word` fit in `limit` (at least one)."""
    n = min(len(word), limit)
    while n > 1 and size(word[:n]) > limit:
        n -= 1
    return n


def _pieces(text: str, limit: int, size: Size) -> list[str]:
    """Sentences, each cut on spaces (and, for one endless word, hard) to fit the limit."""
    out: list[str] = []
    for sentence in (s for s in _SENTENCE_END.split(text) if s and s.strip()):
        if size(sentence) <= limit:
            out.append(sentence.strip())
            continue
        for word in (w for w in _SPACE.split(sentence) if w):
            while size(word) > limit:  # a URL or a token longer than a whole message
                n = _hard_cut(word, limit, size)
                out.append(word[:n])
                word = word[n:]
            out.append(word)
    return out


def split_text(text: str, limit: int, max_parts: int, size: Size = len) -> list[str]:
    """[text] when it fits; otherwise parts of at most `limit` (as `size` counts), split
    between sentences where possible. Raises TooLong when more than `max_parts` would be
    needed."""
    if size(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit, size):
        candidate = f"{current} {piece}" if current else piece
        if size(candidate) <= limit:
            current = candidate
        else:
            parts.append(current)
            current = piece
    if current:
        parts.append(current)
    if len(parts) > max_parts:
        raise TooLong(f"{size(text)} units need {len(parts)} messages (at most {max_parts})")
    return parts
