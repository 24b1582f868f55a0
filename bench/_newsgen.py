"""A generator of news-like texts with known duplicates, for bench/dedup.py.

Each *event* has an original wire article and 0-4 syndicated copies, each copy edited the way
republishers do: other page chrome (a dateline, "Advertisement", a footer), an edited headline, a
paragraph dropped or added, a cut down to the lede, light copy-editing, whitespace and punctuation
noise. Beside them, *distinct* articles on the same topic: the same town, the same day, the same
stock phrases ("the regional governor said on Telegram"), sometimes the same background paragraph,
but another event. Truth: two texts are duplicates exactly when they come from the same event.

Words are drawn from a Zipf distribution over function words and a synthetic vocabulary, so unrelated
texts share common phrases at about the rate real news does. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

__all__ = ["GENERATOR_VERSION", "Article", "generate"]

#: Bumped whenever the same seed gives other texts (bench/_pagegen.py keeps its corpora under it).
#: 2: a new word pool when the last one runs out, instead of replaying the old one from near its start.
GENERATOR_VERSION = 2

_FUNCTION = ("the of and to in a on said that for was with by at as from were is an after it had has their "
             "its have been two which more than about also who this they but over not one three local near "
             "into city since during while people including other region forces officials according").split()
_TOWNS = ("Kharkiv Odesa Pokrovsk Kherson Zaporizhzhia Dnipro Sumy Kramatorsk Kupiansk Chasiv Toretsk Mykolaiv "
          "Nikopol Izium Lyman Bakhmut Avdiivka Vovchansk Huliaipole Orikhiv Kostiantynivka Sloviansk Kyiv Lviv "
          "Rivne Poltava Chernihiv Bilhorod Ochakiv Marhanets").split()
_STOCK = (
    "the head of the {town} regional military administration said on Telegram",
    "no military facilities were located in the area according to local officials",
    "the information could not be independently verified",
    "emergency services were working at the scene on {day}",
    "the general staff of the armed forces said in its morning update",
    "residents of {town} were urged to remain in shelters until the alert was lifted",
    "air raid sirens sounded across the {town} region for several hours",
    "the regional prosecutor's office opened a criminal investigation",
    "russian forces have repeatedly targeted {town} in recent weeks",
    "the ministry of defence did not immediately respond to a request for comment",
)
_CHROME_HEAD = ("{TOWN}, {day} (Wire) —", "Advertisement", "Listen to this article", "{TOWN} —",
                "Updated {day}", "Share this story", "Breaking news")
_CHROME_TAIL = ("Follow us on Telegram for the latest news from the front line.",
                "Reporting by the Wire desk; editing by the night editor.",
                "Read more: the war in maps, updated daily.",
                "Support independent journalism: subscribe for one dollar a month.",
                "Copyright 2024 the Wire. All rights reserved.")


@dataclass(frozen=True)
class Article:
    """One generated text; ``event`` is the truth (same event, same story)."""

    key: str
    event: int
    title: str
    text: str
    town: str
    published: datetime
    edits: tuple[str, ...] = ()


class _Words:
    def __init__(self, rnd: np.random.Generator, size: int = 6000) -> None:
        syllables = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "ol", "ir")]
        words: set[str] = set()
        while len(words) < size:
            words.add("".join(rnd.choice(syllables, size=int(rnd.integers(2, 4)))))
        self.vocab = np.array(list(_FUNCTION) + sorted(words))
        ranks = np.arange(1, len(self.vocab) + 1)
        weights = 1.0 / ranks**1.05
        self.rnd = rnd
        self.weights = weights / weights.sum()
        self.pool = self._pool()
        self.cursor = 0

    def _pool(self) -> list[str]:
        """A million words at once: numpy's weighted choice is slow per call, fast per million."""
        return self.rnd.choice(self.vocab, size=1 << 20, p=self.weights).tolist()

    def draw(self, n: int) -> list[str]:
        # A new pool when this one runs out (after about 650 events, some 1,600 words each with their
        # copies and same-topic articles): replaying it would make every later text a near-copy of an
        # earlier event's, which no news feed does.
        if self.cursor + n > len(self.pool):
            self.pool, self.cursor = self._pool(), 0
        out = self.pool[self.cursor : self.cursor + n]
        self.cursor += n
        return out

    def sentence(self, town: str, day: str, stock_rate: float) -> str:
        if self.rnd.random() < stock_rate:
            body = str(self.rnd.choice(_STOCK)).format(town=town, day=day)
        else:
            n = int(self.rnd.integers(12, 26))
            words = self.draw(n)
            if self.rnd.random() < 0.3:
                words.insert(int(self.rnd.integers(0, n)), town)
            body = " ".join(words)
        return body[0].upper() + body[1:] + "."

    def paragraph(self, town: str, day: str, stock_rate: float = 0.12) -> str:
        return " ".join(self.sentence(town, day, stock_rate) for _ in range(int(self.rnd.integers(2, 5))))


def _noise(rnd: random.Random, text: str) -> str:
    out = []
    for ch in text:
        r = rnd.random()
        if ch == " " and r < 0.05:
            out.append("  " if r < 0.03 else "\n")
        elif ch == "," and r < 0.5:
            continue
        elif ch == "'" and r < 0.8:
            out.append("’")
        else:
            out.append(ch)
    return "".join(out).replace(" — ", " - ")


def _copyedit(rnd: random.Random, words: _Words, paragraph: str, rate: float = 0.01) -> str:
    tokens = paragraph.split(" ")
    for i in range(len(tokens)):
        if rnd.random() < rate:
            tokens[i] = words.draw(1)[0]
    return " ".join(tokens)


def _variant(rnd: random.Random, words: _Words, paragraphs: list[str], title: str, town: str, day: str
             ) -> tuple[str, list[str], tuple[str, ...]]:
    """A syndicated copy: 1-3 edits drawn from what republishers do."""
    edits = rnd.sample(["chrome", "headline", "drop", "add", "lede", "copyedit", "noise"], k=rnd.randint(1, 3))
    if "lede" in edits:  # a copy cut down to its lede is not also re-edited paragraph by paragraph
        edits = [e for e in edits if e not in {"drop", "add"}]
    out = list(paragraphs)
    if "lede" in edits:
        out = out[: rnd.choice((1, 2, 2, 3))]
        while len(" ".join(out).split()) < 40 and len(out) < len(paragraphs):
            out = paragraphs[: len(out) + 1]
    if "drop" in edits and len(out) > 3:
        out.pop(rnd.randrange(1, len(out)))
    if "add" in edits:
        out.insert(rnd.randrange(1, len(out) + 1), words.paragraph(town, day))
    if "copyedit" in edits:
        out = [_copyedit(rnd, words, p) for p in out]
    if "chrome" in edits:
        out = [rnd.choice(_CHROME_HEAD).format(TOWN=town.upper(), day=day), *out,
               *rnd.sample(_CHROME_TAIL, k=rnd.randint(1, 2))]
    if "noise" in edits:
        out = [_noise(rnd, p) for p in out]
    if "headline" in edits:
        title = rnd.choice(("UPDATE: ", "", "Live: ")) + title.replace(" in ", " near ") + rnd.choice(("", " - reports"))
    return title, out, tuple(sorted(edits))


def generate(events: int, *, seed: int = 7, copies: tuple[int, int] = (0, 4), same_topic_rate: float = 0.6
             ) -> Iterator[Article]:
    """Originals, their copies and same-topic distinct articles, interleaved as feeds would deliver them."""
    rnd = random.Random(seed)
    words = _Words(np.random.default_rng(seed))
    start = datetime(2024, 6, 1, tzinfo=UTC)
    event_id = 0
    batch: list[Article] = []
    for _ in range(events):
        town = rnd.choice(_TOWNS)
        when = start + timedelta(days=rnd.randrange(30), minutes=rnd.randrange(24 * 60))
        day = when.strftime("%A")
        paragraphs = [words.paragraph(town, day) for _ in range(rnd.randint(5, 11))]
        title = f"Attack in {town} leaves {rnd.randint(2, 30)} dead, officials say"
        event_id += 1
        batch.append(Article(f"e{event_id}", event_id, title, "\n\n".join(paragraphs), town, when))
        for c in range(rnd.randint(*copies)):
            t, ps, edits = _variant(rnd, words, paragraphs, title, town, day)
            batch.append(Article(f"e{event_id}c{c}", event_id, t, "\n\n".join(ps), town,
                                 when + timedelta(minutes=rnd.randint(5, 600)), edits))
        # Same town, same day, another event: must stay apart (sometimes sharing a background paragraph).
        while rnd.random() < same_topic_rate:
            event_id += 1
            other = [words.paragraph(town, day, stock_rate=0.25) for _ in range(rnd.randint(4, 9))]
            if rnd.random() < 0.3:  # the same background paragraph (from the end, where background goes)
                other.insert(rnd.randrange(1, len(other)), paragraphs[-1])
            batch.append(Article(f"e{event_id}", event_id, f"In {town}, another story of the day",
                                 "\n\n".join(other), town, when + timedelta(minutes=rnd.randint(-300, 300)),
                                 ("same-topic",)))
        if len(batch) >= 64:
            rnd.shuffle(batch)
            yield from batch
            batch = []
    rnd.shuffle(batch)
    yield from batch
