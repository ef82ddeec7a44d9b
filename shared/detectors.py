"""Pure text rules of spec 3.5, 3.6, 3.8, 3.12 and 3.13, run on CyTube's escaped chat HTML.

Each function returns what it found; attribution (aliases, self-kudos, existence,
once-per-message) is the projection's business.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_PLUS_PREFIX = re.compile(r"\+\+(\w+)")
_PLUS_SUFFIX = re.compile(r"(\w+)\+\+")
_EMOTE = re.compile(r"#(\w+)")
_LAUGH = re.compile(r"(?:ha|he|ho){2,}")
# Deliberately different from 0.7.1: only `+`/`++` vote up and `-`/`--` down; `+-` is ignored.
_VOTE = re.compile(r"(?:^|\s)(?:movie|film|vid|video)(\+\+|\+|--|-)\s*$")

_TRIGGER_STRIP = ".,!?;:"
_CANDIDATE_STRIP = ".,!?;:@"
LAUGHTER_PHRASE = "haha"
DEFAULT_TRIGGER_PHRASES = ("lol", "rofl", "haha")

_VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".webm", ".flv", ".mov", ".wmv", ".m4v", ".mpg", ".mpeg")


def plusplus_targets(text: str) -> list[str]:
    """`++name` matches (left to right), then `name++` matches, duplicates included."""
    if "++" not in text:
        return []
    return _PLUS_PREFIX.findall(text) + _PLUS_SUFFIX.findall(text)


def _neighbours(words: list[str], i: int) -> list[str]:
    out = []
    if i > 0:
        cand = words[i - 1].strip(_CANDIDATE_STRIP)
        if len(cand) > 1:
            out.append(cand)
    if i < len(words) - 1:
        cand = words[i + 1].strip(_CANDIDATE_STRIP)
        if len(cand) > 1:
            out.append(cand)
    return out


@functools.lru_cache(maxsize=16)
def _trigger_search(phrases: frozenset[str]) -> Callable[[str], re.Match[str] | None]:
    """A regex that finds any word that could be a trigger: never misses one (it may find a
    word the exact scan then rejects), so most chat lines skip the word-by-word scan."""
    alternatives = "|".join(sorted((re.escape(p) for p in phrases), key=len, reverse=True))
    strip = re.escape(_TRIGGER_STRIP)
    return re.compile(rf"(?<!\S)[{strip}]*(?:{alternatives}|(?:ha|he|ho){{2,}})[{strip}]*(?!\S)").search


def phrase_pairs(text: str, phrases: frozenset[str]) -> list[tuple[str, str]]:
    """(candidate, phrase) pairs of spec 3.6, in order found. Nothing when `phrases` is empty."""
    if not phrases or _trigger_search(phrases)(text.lower()) is None:
        return []
    return scan_phrase_pairs(text, phrases)


def scan_phrase_pairs(text: str, phrases: frozenset[str]) -> list[tuple[str, str]]:
    """The exact word-by-word rule of spec 3.6 (phrase_pairs without the pre-check)."""
    if not phrases:
        return []
    words = text.split()
    out: list[tuple[str, str]] = []
    for i, word in enumerate(words):
        t = word.lower().strip(_TRIGGER_STRIP)
        trigger = t in phrases
        laugh = len(t) >= 4 and t[0] == "h" and _LAUGH.fullmatch(t) is not None
        if not (trigger or laugh):
            continue
        cands = _neighbours(words, i)
        if trigger:
            out.extend((c, t) for c in cands)
        if laugh:
            out.extend((c, LAUGHTER_PHRASE) for c in cands)
    return out


def emote_names(text: str, emotes: frozenset[str] | set[str]) -> list[str]:
    """Every `#name` occurrence whose lower-cased name is in the channel's emote set."""
    if not emotes or "#" not in text:
        return []
    out = []
    for run in _EMOTE.findall(text):
        low = run.lower()
        if low in emotes:
            out.append(low)
    return out


def normalize_emote(name: str) -> str:
    """Emote names are stored lower-cased with leading `#` removed (spec 3.8)."""
    return name.lstrip("#").lower()


def vote_value(text: str) -> int:
    """+1, -1, or 0 when the message is not a movie vote."""
    stripped = text.rstrip()
    if not stripped or stripped[-1] not in "+-":
        return 0
    m = _VOTE.search(text.lower())
    if m is None:
        return 0
    return 1 if m.group(1)[0] == "+" else -1


def clean_title(title: str | None) -> str:
    """Spec 3.12 title cleaning: one video extension removed, `.`/`_` to spaces, collapsed."""
    if not title:
        return "Unknown"
    low = title.lower()
    for ext in _VIDEO_EXTENSIONS:
        if low.endswith(ext):
            title = title[: -len(ext)]
            break
    cleaned = " ".join(title.replace(".", " ").replace("_", " ").split())
    return cleaned or "Unknown"
