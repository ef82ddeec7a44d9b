"""Spec 3.5, 3.6, 3.8, 3.12, 3.13 examples, as tables. Differences from 0.7.1 are named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from userstats.shared import detectors as d

SPEC_PHRASES = frozenset({"lol", "rofl", "lmao", "haha", "😂"})


@pytest.mark.parametrize(
    ("text", "targets"),
    [
        ("++alice for the help", ["alice"]),
        ("thanks alice++", ["alice"]),
        ("++alice ++bob thanks charlie++", ["alice", "bob", "charlie"]),
        ("++alice++", ["alice", "alice"]),  # the detector finds both; the projection counts once
        ("foo++bar", ["bar", "foo"]),
        ("+++alice", ["alice"]),
        ("alice+++", ["alice"]),
        ("@bob++", ["bob"]),
        ("bob++!", ["bob"]),
        ("++bob,", ["bob"]),
        ("bob_1++", ["bob_1"]),
        ("c++ is great", ["c"]),
        ("movie++", ["movie"]),
        ("thanks ++ alice", []),
        ("alice-- bob++", ["bob"]),
        ("no kudos here", []),
        ("++Ünïcode", ["Ünïcode"]),
    ],
)
def test_plusplus_spec_examples(text: str, targets: list[str]) -> None:
    assert d.plusplus_targets(text) == targets


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("lol alice", [("alice", "lol")]),
        ("alice lol", [("alice", "lol")]),
        ("LOL, @Alice!", [("Alice", "lol")]),
        ("haha alice", [("alice", "haha"), ("alice", "haha")]),  # trigger + laughter rule
        ("hahaha bob", [("bob", "haha")]),
        ("hehe dave", [("dave", "haha")]),
        ("HoHo eve", [("eve", "haha")]),
        ("lol a", []),
        ("lmao!!! carol.", [("carol", "lmao")]),
        ("laughing out loud lol", [("loud", "lol")]),
        ("lol 😂 bob", [("lol", "😂"), ("bob", "😂")]),
        ("hah bob", []),
        ("hahah bob", []),
        ("ha bob", []),
        ("lol lol", [("lol", "lol"), ("lol", "lol")]),
        ("&#40;bob&#41; lol", [("&#40;bob&#41", "lol")]),  # escaped parens never resolve to bob
    ],
)
def test_phrase_spec_examples(text: str, pairs: list[tuple[str, str]]) -> None:
    assert d.phrase_pairs(text, SPEC_PHRASES) == pairs


def test_empty_phrase_set_detects_nothing_not_even_laughter() -> None:
    assert d.phrase_pairs("hahaha bob lol carol", frozenset()) == []


def test_multi_word_phrases_never_match() -> None:
    assert d.phrase_pairs("thank you bob", frozenset({"thank you"})) == []


EMOTES = frozenset({"kappa", "pogchamp", "pog"})


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("#kappa #KAPPA", ["kappa", "kappa"]),
        ("#poggers", []),
        ("x#kappa", ["kappa"]),
        ("##kappa", ["kappa"]),
        ("#PogChamp!", ["pogchamp"]),
        ("#pog-champ", ["pog"]),
        ("what&#39;s up", []),
        ("no emotes", []),
    ],
)
def test_emote_spec_examples(text: str, hits: list[str]) -> None:
    assert d.emote_names(text, EMOTES) == hits


def test_empty_emote_set_detects_nothing() -> None:
    assert d.emote_names("#kappa", set()) == []


@pytest.mark.parametrize(
    ("text", "vote"),
    [
        ("great movie++", 1),
        ("MOVIE++", 1),
        ("film+", 1),
        ("vid++  ", 1),
        ("movie-", -1),
        ("video--", -1),
        ("movie++ lol", 0),
        ("the movie ++", 0),
        ("supermovie++", 0),
        ("movie+-", 0),  # deliberately different: 0.7.1 counted +- and -+ as up-votes
        ("movie-+", 0),
        ("movie+++", 0),
        ("movie", 0),
    ],
)
def test_vote_examples(text: str, vote: int) -> None:
    assert d.vote_value(text) == vote


@pytest.mark.parametrize(
    ("title", "cleaned"),
    [
        ("Night_of_the_Living_Dead.1968.mkv", "Night of the Living Dead 1968"),
        ("Mr. Robot", "Mr Robot"),
        ("", "Unknown"),
        (None, "Unknown"),
        (".mkv", "Unknown"),
        ("a.MP4.mkv", "a MP4"),  # only one extension is removed
        ("clip.MPEG", "clip"),
        ("  many   spaces_here ", "many spaces here"),
    ],
)
def test_title_cleaning(title: str | None, cleaned: str) -> None:
    assert d.clean_title(title) == cleaned


def test_emote_names_are_normalized() -> None:
    assert d.normalize_emote("##Kappa") == "kappa"


# --- properties ------------------------------------------------------------------------

words = st.text(alphabet=st.characters(categories=["L", "N"]) | st.sampled_from("_+-#@!.,? "), max_size=60)


@given(words)
def test_plusplus_targets_are_word_runs_that_touch_plus_plus(text: str) -> None:
    for target in d.plusplus_targets(text):
        assert target and all(ch.isalnum() or ch == "_" for ch in target)
        assert f"++{target}" in text or f"{target}++" in text


@given(words)
def test_phrase_candidates_are_neighbours_longer_than_one(text: str) -> None:
    neighbours = set(text.split())
    for cand, phrase in d.phrase_pairs(text, SPEC_PHRASES):
        assert len(cand) > 1
        assert any(cand == w.strip(".,!?;:@") for w in neighbours)
        assert phrase in SPEC_PHRASES


@given(words, st.sets(st.text(alphabet="abcxyz_1", min_size=1, max_size=5), max_size=5))
def test_emote_hits_are_members_and_counted_per_occurrence(text: str, names: set[str]) -> None:
    hits = d.emote_names(text, names)
    assert all(h in names for h in hits)
    assert len(hits) <= text.count("#")


@given(
    st.text(max_size=40),
    st.sampled_from(["movie", "film", "vid", "video"]),
    st.sampled_from(["+", "++", "-", "--"]),
)
def test_a_trailing_vote_token_always_votes(prefix: str, word: str, sign: str) -> None:
    text = f"{prefix} {word}{sign}"
    assert d.vote_value(text) == (1 if sign[0] == "+" else -1)


@given(
    st.lists(
        st.sampled_from(
            ["lol", "LOL,", "haha", "hehe!", "ho", "hah", "bob", "@alice", "x", "😂", "rofl.", "lmao"]
        )
        | st.text(max_size=8),
        max_size=8,
    ).map(" ".join)
)
def test_the_pre_check_never_hides_a_pair(text: str) -> None:
    assert d.phrase_pairs(text, SPEC_PHRASES) == d.scan_phrase_pairs(text, SPEC_PHRASES)
