"""Batch shingle sets: the same similarities as dedup.compare on dedup.shingle_set, to the last bit."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from sitrep import dedup, shingles
from tests.texts import article, text

_EDGE = {
    "empty": "",
    "one-word": "Kharkiv",
    "four-words": "drone strike in Odesa",
    "four-words-again": "Drone, strike in ODESA!",  # the same words after case folding and punctuation
    "five-words": "drone strike in Odesa overnight",
    "contains-the-five": "officials said a drone strike in Odesa overnight killed two",
    "unicode": "Ｏｄｅｓａ ﬁre crews — “drone strike” in Odesa overnight",
}


def _texts() -> dict[int, str]:
    base = article(7)
    texts = [text(article(seed)) for seed in range(6)]
    texts += [text(base), text(base[:2]), text(["ODESA (Wire) --", *base[1:]]), text(base + article(8)[:1])]
    return dict(enumerate([*texts, *_EDGE.values()]))


@pytest.mark.parametrize("chunk", [shingles._CHUNK_WORDS, 7, 300], ids=["default", "tiny-chunks", "some-chunks"])
def test_similarities_are_those_of_the_python_sets(chunk, monkeypatch):
    # the words are numbered a chunk at a time (short holds of the GIL): the numbering is the same
    monkeypatch.setattr(shingles, "_CHUNK_WORDS", chunk)
    texts = _texts()
    sets = shingles.ShingleSets(texts)
    python = {key: dedup.shingle_set(value) for key, value in texts.items()}
    for a, b in itertools.product(texts, repeat=2):
        assert sets.compare(a, b) == dedup.compare(python[a], python[b]), (a, b)
    assert all(sets.size(key) == len(python[key]) for key in texts)


@pytest.mark.parametrize("vocabulary", [50, 20_000], ids=["small-vocabulary", "large-vocabulary"])
def test_every_window_gets_one_number_and_distinct_windows_distinct_numbers(vocabulary):
    rnd = random.Random(vocabulary)
    ids = np.array([rnd.randrange(vocabulary) for _ in range(6000)] + [1, 2, 3, 4, 5] * 3, dtype=np.int64)
    codes = shingles._window_codes(ids).tolist()
    words = ids.tolist()
    windows = list(zip(*(words[i:] for i in range(dedup.SHINGLE_WORDS)), strict=False))
    number_of: dict[tuple[int, ...], int] = {}
    for window, code in zip(windows, codes, strict=True):
        assert number_of.setdefault(window, code) == code
    assert len(set(number_of.values())) == len(number_of)


def test_texts_added_in_several_calls_compare_as_if_added_at_once():
    texts = _texts()
    keys = sorted(texts)
    sets = shingles.ShingleSets({k: texts[k] for k in keys[::2]})
    sets.add({k: texts[k] for k in keys[1::2]})  # new words and words already numbered
    python = {key: dedup.shingle_set(value) for key, value in texts.items()}
    for a, b in itertools.product(texts, repeat=2):
        assert sets.compare(a, b) == dedup.compare(python[a], python[b]), (a, b)
    assert all(key in sets for key in texts) and 999 not in sets


def test_adding_after_a_comparison_is_refused():
    """The shingles are numbered at the first comparison: a text added later would be numbered apart."""
    texts = _texts()
    sets = shingles.ShingleSets({0: texts[0], 1: texts[1]})
    sets.compare(0, 1)
    with pytest.raises(RuntimeError, match="already numbered"):
        sets.add({2: texts[2]})
