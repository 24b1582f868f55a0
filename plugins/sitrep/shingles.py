"""Exact word-shingle sets for a batch of texts at once, as sets of integers.

The near-duplicate check (sitrep.dedup) verifies each LSH candidate on the exact shingle sets of the two
texts. Built one text at a time as Python sets of word 5-tuples (``dedup.shingle_set``), those sets were
most of the load step's Python time: a tuple is built per shingle and hashed again at every lookup
(tuples do not cache their hash). Here a batch's texts are tokenized once, their words numbered (a
batch-local vocabulary) and every shingle numbered with numpy. Each set is a sorted numpy array of
distinct numbers and an intersection a binary search: a Python set of the same numbers took three
times as long to build (0.14 ms per text of 360 words, each number allocated as a Python int) as
np.unique, and longer than its comparisons. The numbers are exact (never a hash that could collide:
two windows get one number only when their five words are the same), so the similarities are those of
``dedup.compare`` on ``dedup.shingle_set``, to the last bit.

    sets = ShingleSets({1: "text one ...", 2: "text two ..."})
    sim = sets.compare(1, 2)     # a dedup.Similarity
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np

from sitrep import dedup

__all__ = ["ShingleSets"]

_N = dedup.SHINGLE_WORDS
_INT64_MAX = 2**63 - 1
#: Words numbered per call: each call holds the GIL throughout, and the loader's main thread, waiting on
#: the GIL to read the server's reply, left the server idle for 0.2-0.3 s per batch of 10k reports.
_CHUNK_WORDS = 20_000


class ShingleSets:
    """The exact shingle sets of texts (key -> text), numbered within the batch.

    Texts can come in several calls (``add``), so that a caller can split the texts it has into words
    while it waits for the rest; a text's set is built the first time it is compared, and from then on
    the numbering is fixed and ``add`` refused.
    """

    def __init__(self, texts: Mapping[int, str] | None = None) -> None:
        self._vocabulary: dict[str, int] = {}
        self._chunks: list[np.ndarray] = []  # the word numbers of each add(), texts end to end
        self._length = 0
        self._spans: dict[int, tuple[int, int]] = {}  # key -> (start, end) of texts with at least _N words
        self._short: dict[tuple[str, ...], int] = {}
        self._sets: dict[int, np.ndarray] = {}  # key -> its distinct shingle numbers, sorted
        self._codes: np.ndarray | None = None
        self.add(texts or {})

    def add(self, texts: Mapping[int, str]) -> None:
        """Split more texts into words and number the words (the shingles are numbered at the first compare)."""
        if self._codes is not None:
            raise RuntimeError("ShingleSets.add() after a comparison: the shingles are already numbered")
        words: list[str] = []
        for key, text in texts.items():
            found = dedup.tokens(text)
            if len(found) < _N:  # one shingle of all its words: a number of its own, never a window's
                number = [-1 - self._short.setdefault(tuple(found), len(self._short))] if found else []
                self._sets[key] = np.array(number, dtype=np.int64)
                continue
            start = self._length + len(words)
            self._spans[key] = (start, start + len(found))
            words += found
            if len(words) >= _CHUNK_WORDS:
                self._chunks.append(_numbered(words, self._vocabulary))
                self._length += len(words)
                words = []
        if words:
            self._chunks.append(_numbered(words, self._vocabulary))
            self._length += len(words)

    def _set(self, key: int) -> np.ndarray:
        found = self._sets.get(key)
        if found is None:
            if self._codes is None:  # every text's windows at once (a window across two texts is never read)
                self._codes = _window_codes(np.concatenate(self._chunks))
            start, end = self._spans[key]
            found = self._sets[key] = np.unique(self._codes[start : end - _N + 1])
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._sets or key in self._spans

    def size(self, key: int) -> int:
        return int(self._set(key).size)

    def compare(self, a: int, b: int) -> dedup.Similarity:
        """``dedup.compare`` of the two texts' shingle sets."""
        small, large = sorted((self._set(a), self._set(b)), key=len)
        return dedup.similarity(_common(small, large), small.size, large.size)


def _common(small: np.ndarray, large: np.ndarray) -> int:
    """How many numbers two sorted arrays of distinct numbers share: each of the smaller's looked up."""
    if not small.size:
        return 0
    at = np.searchsorted(large, small)
    np.minimum(at, large.size - 1, out=at)
    return int(np.count_nonzero(large[at] == small))


def _numbered(words: list[str], vocabulary: dict[str, int]) -> np.ndarray:
    """A number per word, the same for the same word: new words join ``vocabulary`` in the order they
    first appear, so the numbers do not depend on the hash seed (the distinct words found in C)."""
    for word in dict.fromkeys(words):
        if word not in vocabulary:
            vocabulary[word] = len(vocabulary)
    return np.fromiter(map(vocabulary.__getitem__, words), dtype=np.int64, count=len(words))


def _window_codes(ids: np.ndarray) -> np.ndarray:
    """An exact number for every window of _N words starting at each position (the last _N - 1 positions,
    and windows across two texts, get numbers nobody reads)."""
    vocab = int(ids.max()) + 1
    windows = ids.size - _N + 1
    if vocab**_N <= _INT64_MAX:  # a small vocabulary: the five word numbers fit one int64 as they are
        code = np.zeros(windows, dtype=np.int64)
        for i in range(_N):
            code = code * vocab + ids[i : windows + i]
        return code
    # Three words, densified, then two more: exact while (distinct triples) * vocab**2 fits an int64.
    head = (ids[:-2] * vocab + ids[1:-1]) * vocab + ids[2:]
    distinct, dense = np.unique(head[:windows], return_inverse=True)
    if distinct.size * vocab * vocab <= _INT64_MAX:
        return cast(np.ndarray, (dense.astype(np.int64) * vocab + ids[3 : 3 + windows]) * vocab + ids[4 : 4 + windows])
    numbers: dict[tuple[int, ...], int] = {}  # beyond any real batch: number the windows through a dict
    words = ids.tolist()
    return np.array([numbers.setdefault(w, len(numbers)) for w in zip(*(words[i:] for i in range(_N)), strict=False)],
                    dtype=np.int64)
