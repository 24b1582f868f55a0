"""The labelled extraction set (bench/labelled) and the shingle-based scorer used to grade it.

The scorer is the common one of article-extraction benchmarks: both texts are lower-cased and split into
word tokens, then into overlapping shingles of four tokens; precision and recall count the shingles (as
a multiset) the extraction shares with the truth. It rewards a kept paragraph and punishes a kept
"related stories" box alike, and it ignores whitespace and line breaks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LABELLED = Path(__file__).resolve().parent / "labelled"
SHINGLE = 4
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class LabelledPage:
    name: str
    url: str
    html: bytes
    truth: str


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_set(folder: Path = LABELLED) -> list[LabelledPage]:
    """Every page of the set with its truth; the URL is a made-up one on a reserved test domain."""
    pages = []
    for html in sorted((folder / "pages").glob("*.html")):
        truth = (folder / "truth" / f"{html.stem}.txt").read_text(encoding="utf-8")
        pages.append(LabelledPage(html.stem, f"https://news.example/{html.stem}.html", html.read_bytes(), truth))
    if not pages:
        raise SystemExit(f"no labelled pages under {folder}: run python3 bench/labelled/build.py")
    return pages


def shingles(text: str, n: int = SHINGLE) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text.casefold())
    if len(tokens) < n:
        return Counter([tuple(tokens)]) if tokens else Counter()
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def score(extracted: str | None, truth: str) -> Score:
    """Shingle precision and recall of one extraction against its truth (an empty extraction scores 0)."""
    got, want = shingles(extracted or ""), shingles(truth)
    common = sum((got & want).values())
    precision = common / sum(got.values()) if got else 0.0
    recall = common / sum(want.values()) if want else 0.0
    return Score(precision, recall)


def mean(scores: list[Score]) -> tuple[float, float, float]:
    """Macro averages (precision, recall, F1) over pages: each page counts once, whatever its length."""
    n = len(scores) or 1
    return (sum(s.precision for s in scores) / n, sum(s.recall for s in scores) / n, sum(s.f1 for s in scores) / n)
