"""Near-duplicate detection: MinHash over word shingles, LSH bands kept in PostgreSQL.

Syndicated copies of one article (other page chrome, an edited headline, a paragraph dropped or added,
a copy cut down to its lede, spacing and punctuation noise) must end in one story; distinct articles on
the same topic (same town, same day, another event) must not.

How, in two steps:

1. Candidates (cheap, in the worker): the text's word 5-shingles are MinHashed once over the whole
   text (``FULL_BANDS`` bands of ``FULL_ROWS`` rows) and once per lede window, ``LEDE_WORDS`` words
   from each of its first paragraphs (``LEDE_BANDS`` x ``LEDE_ROWS``). Each band becomes one 64-bit
   key; the load step stores the keys in ``story_bands (band, hash) -> report_id`` and finds the candidates of a new
   report with one index probe per band, so a lookup costs the same at ten thousand and at ten million
   reports, survives restarts and is shared by every loader. The lede bands find the copies that
   were cut down to their first paragraphs, whose Jaccard with the whole article is low.
2. Verification (exact, in the load step): a candidate is a near-duplicate when the exact shingle
   Jaccard of the two texts reaches ``DedupSettings.jaccard``, or when the shorter text (at least
   ``DedupSettings.min_shingles`` shingles) is contained in the longer one to
   ``DedupSettings.containment``. Only candidates are verified, so verification never scans, and only
   those published within ``DedupSettings.window_days`` of the report (a story's copies appear within
   days), so its work stays bounded as the index grows.

The band layout (shingle size, bands, rows, lede length, seed) is a storage format: changing it makes
the stored keys useless, so it is a constant here, not a setting. The thresholds are settings.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from datasketch import MinHash

__all__ = [
    "FULL_BANDS",
    "LEDE_BANDS",
    "LEDE_WINDOWS",
    "LEDE_WORDS",
    "MAX_KEYS",
    "SHINGLE_WORDS",
    "Similarity",
    "band_keys",
    "compare",
    "is_near_duplicate",
    "lede_windows",
    "shingle_set",
    "shingles",
    "split_keys",
    "tokens",
]

#: Words per shingle: 5 keeps shared stock phrases ("said on Telegram") from looking like a copy.
SHINGLE_WORDS = 5
#: Whole-text signature: 18 bands of 4 rows. A pair at Jaccard 0.5 is a candidate with p = 0.69,
#: at 0.7 with p = 0.995; at 0.05 with p = 0.0001 (so unrelated reports almost never cost a look).
FULL_BANDS, FULL_ROWS = 18, 4
#: Lede signatures: a window of LEDE_WORDS words from each of the first LEDE_WINDOWS paragraphs of
#: LEDE_MIN_WORDS words or more, 6 bands of 3 rows each. All windows share the same band numbers, so
#: a copy whose page adds a headline, a standfirst or a dateline paragraph (shifting which paragraph
#: comes first) still meets the original's lede. They find the copies cut down to their first
#: paragraphs, whose Jaccard with the whole article is low (p = 0.92 per window at a window Jaccard
#: of 0.7, as when an inline dateline shifts it; 1.0 when the window is the same).
LEDE_WORDS = 40
LEDE_MIN_WORDS = 8
LEDE_WINDOWS = 3
LEDE_BANDS, LEDE_ROWS = 6, 3
#: Keys per report at most (story_bands rows).
MAX_KEYS = FULL_BANDS + LEDE_WINDOWS * LEDE_BANDS
_SEED = 20240603

_WORD = re.compile(r"\w+")
# tokens() without the regex: on ASCII, \w is [A-Za-z0-9_], NFKC changes nothing and case folding is
# lower(), so one translate (other characters to spaces) and str.split() find the same words in 40% of
# the regex's time. Typographic marks common in news, none of them part of a word, become spaces first
# (by str.replace: a translate table is slower than the regex on text that is not ASCII).
_ASCII_WORDS = str.maketrans({c: c.lower() if c.isalnum() or c == "_" else " " for c in map(chr, range(128))})
_MARKS = "\u00a0\u00ab\u00bb\u2010\u2011\u2013\u2014\u2018\u2019\u201c\u201d\u2026"


def tokens(text: str) -> list[str]:
    """Case-folded words of NFKC text: punctuation, spacing and quote styles do not count."""
    plain = text
    if not plain.isascii():
        for mark in _MARKS:
            plain = plain.replace(mark, " ")
        if not plain.isascii():
            return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return plain.translate(_ASCII_WORDS).split()


def shingles(words: Sequence[str], size: int = SHINGLE_WORDS) -> set[str]:
    """Overlapping runs of ``size`` words; a text shorter than that is one shingle of all its words."""
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def shingle_set(text: str) -> set[tuple[str, ...]]:
    """The text's shingles as word tuples, for verification (same sets as shingles(), 3x faster to build)."""
    words = tokens(text)
    if len(words) <= SHINGLE_WORDS:
        return {tuple(words)} if words else set()
    return set(zip(*(words[i:] for i in range(SHINGLE_WORDS)), strict=False))


def _sha1_32(data: bytes) -> int:
    """datasketch's default hash (``sha1_hash32``): the keys stored in story_bands were made with it."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


def _hashed(value: int) -> int:
    """The identity: values reach the MinHash already hashed (each shingle once per text)."""
    return value


@lru_cache(maxsize=4)
def _template(num_perm: int) -> MinHash:
    """An empty MinHash with its permutations drawn once (drawing them costs more than hashing a text).

    datasketch is imported here, not at the top: its package imports scipy (0.7 s), which only the
    extraction workers need; the loader, the DAG process and the CLI import this module for verification.
    """
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=_SEED, hashfunc=_hashed)


def _signature(hashes: Sequence[int], num_perm: int) -> np.ndarray:
    mh = _template(num_perm).copy()
    mh.update_batch(hashes)
    return cast(np.ndarray, mh.hashvalues)


def _keys(signature: np.ndarray, bands: int, rows: int, first_band: int) -> list[int]:
    """One signed 64-bit key per band (BLAKE2b of the band's rows and its number)."""
    values = signature[: bands * rows].astype("<u4").reshape(bands, rows)
    keys = []
    for band in range(bands):
        digest = hashlib.blake2b(values[band].tobytes(), digest_size=8, salt=_SALTS[first_band + band])
        keys.append(int.from_bytes(digest.digest(), "little", signed=True))
    return keys


_SALTS = [band.to_bytes(16, "little") for band in range(FULL_BANDS + LEDE_BANDS)]


def band_keys(text: str) -> list[int]:
    """The LSH keys of a text (the Report.minhash field): FULL_BANDS whole-text keys, then LEDE_BANDS
    keys per lede window (see split_keys for their band numbers). An empty text has no keys.

    A pure function of the text, cheap enough (about a millisecond) to run in the extraction workers:
    the text is tokenized once and each distinct shingle hashed once, the lede windows reusing the
    whole text's hashes.
    """
    paragraphs = [tokens(paragraph) for paragraph in text.split("\n")]
    words = [word for found in paragraphs for word in found]
    if not words:
        return []
    sha1, from_bytes = hashlib.sha1, int.from_bytes  # _sha1_32 inlined: this loop runs once per shingle
    hashes = {shingle: from_bytes(sha1(shingle.encode("utf-8")).digest()[:4], "little") for shingle in shingles(words)}
    keys = _keys(_signature(list(hashes.values()), FULL_BANDS * FULL_ROWS), FULL_BANDS, FULL_ROWS, 0)
    for window in _windows(paragraphs) or [words[:LEDE_WORDS]]:
        # A window is a run of the text's words: its shingles are the text's, already hashed.
        hashed = [hashes.get(shingle) or _sha1_32(shingle.encode("utf-8")) for shingle in shingles(window)]
        keys += _keys(_signature(hashed, LEDE_BANDS * LEDE_ROWS), LEDE_BANDS, LEDE_ROWS, FULL_BANDS)
    return keys


def lede_windows(text: str) -> list[list[str]]:
    """LEDE_WORDS words from each of the first LEDE_WINDOWS paragraphs of LEDE_MIN_WORDS words or more."""
    return _windows(tokens(paragraph) for paragraph in text.split("\n"))


def _windows(paragraphs: Iterable[list[str]]) -> list[list[str]]:
    words: list[str] = []
    starts: list[int] = []
    for found in paragraphs:
        if len(found) >= LEDE_MIN_WORDS and len(starts) < LEDE_WINDOWS:
            starts.append(len(words))
        words += found
        if len(starts) == LEDE_WINDOWS and len(words) >= starts[-1] + LEDE_WORDS:
            break
    return [words[start : start + LEDE_WORDS] for start in starts]


def split_keys(keys: Sequence[int]) -> list[tuple[int, int]]:
    """(band number, key) pairs, the rows of story_bands for one report, without repeats.

    Position i < FULL_BANDS is band i; the lede windows' keys all use bands FULL_BANDS .. +LEDE_BANDS-1.
    """
    pairs = {(i if i < FULL_BANDS else FULL_BANDS + (i - FULL_BANDS) % LEDE_BANDS, key) for i, key in enumerate(keys)}
    return sorted(pairs)


@dataclass(frozen=True)
class Similarity:
    """How alike two texts are, from their exact shingle sets."""

    jaccard: float
    containment: float  # of the smaller set in the larger one
    smaller: int  # shingles in the smaller set

    @property
    def score(self) -> tuple[float, float]:
        """Sort key for choosing the best of several matches: Jaccard first, then containment."""
        return (self.jaccard, self.containment)


def compare(a: set[Any], b: set[Any]) -> Similarity:
    return similarity(len(a & b), len(a), len(b))


def similarity(common: int, size_a: int, size_b: int) -> Similarity:
    """The similarity of two shingle sets from their sizes and how many shingles they share."""
    if not size_a or not size_b:
        return Similarity(0.0, 0.0, 0)
    smaller = min(size_a, size_b)
    return Similarity(common / (size_a + size_b - common), common / smaller, smaller)


def is_near_duplicate(sim: Similarity, *, jaccard: float, containment: float, min_shingles: int) -> bool:
    """The verification rule (see the module docstring); thresholds come from DedupSettings."""
    return sim.jaccard >= jaccard or (sim.smaller >= min_shingles and sim.containment >= containment)
