"""Model text made encodable: surrogate pairs joined, lone halves replaced, across pieces."""

from __future__ import annotations

import json

from botrunner.engine.wellformed import StreamedText, well_formed, well_formed_value

EMOJI = "\U0001f600"


def stream(*pieces: str) -> list[str]:
    text = StreamedText()
    out = [text.feed(p) for p in pieces]
    return [*out, text.flush()]


def test_a_pair_split_across_pieces_goes_out_whole():
    assert stream("a \ud83d", "\ude00 b") == ["a ", f"{EMOJI} b", ""]
    assert stream("\ud83d", "\ude00") == ["", EMOJI, ""]


def test_lone_halves_become_the_replacement_character():
    assert stream("x\ude00y", "z") == ["x\ufffdy", "z", ""]
    assert stream("end \ud83d") == ["end ", "\ufffd"]
    assert stream("\ud83d", "no pair") == ["", "\ufffdno pair", ""]


def test_text_that_is_already_well_formed_is_passed_through_unchanged():
    piece = f"caf\u00e9 {EMOJI}"
    assert StreamedText().feed(piece) is piece
    assert well_formed(piece) is piece


def test_every_string_of_a_value_keys_included_is_made_encodable():
    value = {"type": "tool_use", "input": {"ci\ud800ty": ["Lis\udc00bon", 3, None]}}
    fixed = well_formed_value(value)
    assert fixed == {"type": "tool_use", "input": {"ci\ufffdty": ["Lis\ufffdbon", 3, None]}}
    json.dumps(fixed, ensure_ascii=False).encode("utf-8")  # raises on any surrogate left
