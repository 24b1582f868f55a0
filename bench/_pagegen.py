"""A corpus of realistic news pages and feeds for the end-to-end benchmark, written to disk.

Article texts come from ``bench._newsgen`` (distinct events plus a few syndicated copies, as on the
real web); each is wrapped in page chrome of the kind real news sites ship: a head full of meta tags
and JSON-LD, inline CSS and scripts, a mega-menu, a cookie banner, related-story rails, comments and a
large footer, so that pages weigh 30-200 KB like real ones. Pages are spread over several sites, each
with feeds of 20-200 entries. Deterministic for a given size and seed; cached under bench/out/.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from html import escape
from pathlib import Path

from bench._newsgen import GENERATOR_VERSION, generate

__all__ = ["Corpus", "build_corpus"]

OUT = Path(__file__).resolve().parent / "out"
SITES = 8


@dataclass(frozen=True)
class Corpus:
    root: Path
    pages: list[Path]  # every article page, under root/sites/<site>/
    feeds: dict[str, list[str]]  # site -> feed paths

    @property
    def sites(self) -> list[str]:
        return sorted(self.feeds)


def _filler(rnd: random.Random, words: list[str], n: int) -> str:
    return " ".join(rnd.choice(words) for _ in range(n))


def _chrome(rnd: random.Random, words: list[str], site: str, target_kb: int) -> tuple[str, str, str]:
    """Head extras, top-of-page chrome and bottom chrome adding up to about target_kb of markup."""
    menu = "".join(
        f'<li class="menu-item"><a href="/section/{i}" data-track="nav-{i}">{escape(_filler(rnd, words, 2)).title()}</a>'
        f'<ul class="sub">{"".join(f"<li><a href=/s/{i}/{j}>{escape(_filler(rnd, words, 3))}</a></li>" for j in range(8))}</ul></li>'
        for i in range(14)
    )
    css = "\n".join(f".c{i}{{margin:{i % 7}px;padding:{i % 5}px;color:#{i * 1234567 % 0xFFFFFF:06x}}}" for i in range(300))
    head = f"<style>{css}</style>"
    related = "".join(
        f'<div class="teaser"><a href="/news/{rnd.randrange(10**6)}"><img src="/img/{i}.jpg" alt="">'
        f"<h3>{escape(_filler(rnd, words, 9)).capitalize()}</h3></a><p>{escape(_filler(rnd, words, 25))}</p></div>"
        for i in range(12)
    )
    comments = "".join(
        f'<div class="comment"><span class="user">reader{i}</span><p>{escape(_filler(rnd, words, 30))}</p></div>'
        for i in range(rnd.randrange(2, 9))
    )
    top = (f'<div class="cookie-banner">We and our partners use cookies. <button>Accept</button></div>'
           f'<header class="site-header"><a class="logo" href="/">{escape(site)}</a><nav><ul>{menu}</ul></nav></header>')
    bottom = (f'<aside class="rail"><h2>Related</h2>{related}</aside>'
              f'<section class="comments"><h2>Comments</h2>{comments}</section>'
              f'<footer><nav><ul>{menu}</ul></nav><p>&copy; 2024 {escape(site)}</p></footer>')
    size = len(head) + len(top) + len(bottom)
    script_kb = max(0, target_kb * 1024 - size)
    blob = json.dumps({"config": [_filler(rnd, words, 12) for _ in range(script_kb // 90 + 1)]})[:script_kb]
    head += f"<script>window.__STATE__ = {json.dumps(blob)};</script>"
    return head, top, bottom


def _page(rnd: random.Random, words: list[str], site: str, title: str, text: str, published: str, url: str) -> str:
    head, top, bottom = _chrome(rnd, words, site, target_kb=rnd.randrange(25, 190))
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n") if p.strip())
    ld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle", "headline": title,
                     "datePublished": published, "author": {"@type": "Person", "name": "Staff reporter"}})
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} | {escape(site)}</title>'
            f'<meta property="og:title" content="{escape(title)}"><meta property="article:published_time" content="{published}">'
            f'<link rel="canonical" href="{url}"><script type="application/ld+json">{ld}</script>{head}</head>'
            f'<body>{top}<main><article><h1>{escape(title)}</h1><p class="byline">By Staff reporter</p>'
            f"{paragraphs}</article></main>{bottom}</body></html>")


def _rss(site: str, items: list[tuple[str, str, str]]) -> str:
    body = "".join(f"<item><title>{escape(t)}</title><link>{{{{BASE}}}}{p}</link><guid>{{{{BASE}}}}{p}</guid>"
                   f"<pubDate>{d}</pubDate></item>" for t, p, d in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{escape(site)}</title>'
            f"<link>{{{{BASE}}}}/</link><description>bench</description>{body}</channel></rss>")


def build_corpus(pages: int, *, seed: int = 11) -> Corpus:
    """Write (once) ``pages`` article pages over SITES sites with feeds of 20-200 entries."""
    root = OUT / f"corpus-{pages}-{seed}-g{GENERATOR_VERSION}"
    done = root / ".complete"
    rnd = random.Random(seed)
    articles = []
    for article in generate(max(1, pages), seed=seed, copies=(0, 1)):
        articles.append(article)
        if len(articles) >= pages:
            break
    if not done.exists():
        words = sorted({w.lower() for a in articles[:200] for w in a.text.split() if w.isalpha()}) or ["news"]
        by_site: dict[str, list[tuple[str, str, str]]] = {}
        for i, article in enumerate(articles):
            site = f"site{i % SITES}"
            path = f"/2024/{article.published:%m/%d}/{article.key}-{i}.html"
            published = article.published.isoformat()
            file = root / "sites" / site / path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(_page(rnd, words, site, article.title, article.text, published, "{{BASE}}" + path))
            by_site.setdefault(site, []).append((article.title, path, article.published.strftime("%a, %d %b %Y %H:%M:%S +0000")))
        for site, items in by_site.items():
            start = 0
            n = 0
            while start < len(items):
                size = rnd.randrange(20, 201)
                (root / "sites" / site / f"feed{n}.xml").write_text(_rss(site, items[start:start + size]))
                start += size
                n += 1
        done.touch()
    feeds = {d.name: sorted(f"/{p.name}" for p in d.glob("feed*.xml")) for d in (root / "sites").iterdir() if d.is_dir()}
    files = sorted(p for p in root.rglob("*.html"))
    return Corpus(root=root, pages=files, feeds=feeds)
