"""Pseudo-news texts for dedup tests: the same seed gives the same article, another seed another one."""

from __future__ import annotations

import random

_WORDS = ("shelling drone missile village region officials said residents damaged building power water school "
          "hospital night morning forces attack defence governor reported killed injured train bridge market "
          "road convoy brigade front line positions artillery strike port grain ship warehouse fire crews "
          "evacuation families children volunteers aid trucks border checkpoint talks ceasefire prisoners").split()


def article(seed: int, paragraphs: int = 6, words: int = 60) -> list[str]:
    """Paragraphs of pseudo-news text: the same seed, the same article; another seed, another article."""
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(_WORDS) for _ in range(words)) + "." for _ in range(paragraphs)]


def text(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs)
