"""Builders for the real feeds and HTML pages that tests serve on loopback."""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler

CHROME_NAV = "".join(f'<li><a href="/section/{s}">{s.title()}</a></li>' for s in
                     ("world", "ukraine", "europe", "middle-east", "africa", "opinion", "video", "podcasts"))


def article_html(title: str, paragraphs: list[str], *, site: str = "Test Gazette", date: str | None = None,
                 canonical: str | None = None, author: str | None = "Olena Kovalenko", lang: str = "en") -> str:
    """A news page with real chrome around the article: navigation, related links, comments, footer."""
    meta = []
    if date:
        meta.append(f'<meta property="article:published_time" content="{date}">')
    if canonical:
        meta.append(f'<link rel="canonical" href="{canonical}">')
    if author:
        meta.append(f'<meta name="author" content="{escape(author)}">')
    body = "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    related = "".join(f'<li><a href="/related/{i}">Related story number {i} about something else entirely</a></li>'
                      for i in range(6))
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{escape(title)} | {escape(site)}</title>
<meta property="og:title" content="{escape(title)}">{''.join(meta)}
</head><body>
<header><nav><ul>{CHROME_NAV}</ul></nav><div class="cookie">We use cookies to improve your experience. Accept all?</div></header>
<main><article><h1>{escape(title)}</h1><p class="byline">By {escape(author or 'Staff')}</p>
{body}
</article>
<aside><h3>Most read</h3><ul>{related}</ul></aside>
<section class="comments"><h3>Comments</h3><div class="comment"><p>Reader one: thanks for the reporting.</p></div></section>
</main>
<footer><p>Copyright 2024 {escape(site)}. All rights reserved.</p><ul>{CHROME_NAV}</ul></footer>
</body></html>"""


@dataclass
class Item:
    title: str
    link: str
    guid: str | None = None
    date: str | None = "Tue, 12 Mar 2024 08:00:00 GMT"
    summary: str | None = None


def rss(items: list[Item], *, title: str = "Test Gazette", link: str = "http://127.0.0.1/") -> str:
    entries = []
    for item in items:
        parts = [f"<title>{escape(item.title)}</title>", f"<link>{escape(item.link)}</link>"]
        if item.guid:
            parts.append(f'<guid isPermaLink="false">{escape(item.guid)}</guid>')
        if item.date:
            parts.append(f"<pubDate>{item.date}</pubDate>")
        if item.summary:
            parts.append(f"<description>{escape(item.summary)}</description>")
        entries.append(f"<item>{''.join(parts)}</item>")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>{escape(title)}</title><link>{escape(link)}</link>
<description>News</description>{''.join(entries)}</channel></rss>"""


def paragraphs(topic: str, n: int = 5) -> list[str]:
    """Distinct paragraphs of plausible reporting about ``topic`` (enough words to be an article)."""
    return [
        f"{topic}: paragraph {i} reports that local officials described the situation in detail, "
        f"saying that residents had been warned and that emergency crews were working through the night "
        f"to restore power and water to the districts affected by the events of the day, number {i}."
        for i in range(1, n + 1)
    ]


def respond(handler: BaseHTTPRequestHandler, body: bytes, *, content_type: str = "text/html; charset=utf-8") -> None:
    """Answer 200 with ``body`` from a route handler (for handlers that do something first)."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def drip(out, head: bytes, *, times: int, every: float, byte: bytes = b"a") -> bool:  # type: ignore[no-untyped-def]
    """Write ``head``, then ``byte`` every ``every`` seconds, ``times`` times: a server that is never
    silent for a read timeout, however long it takes. False when the client hung up first."""
    out.write(head)
    try:
        for _ in range(times):
            out.write(byte)
            out.flush()
            time.sleep(every)
    except OSError:
        return False
    return True
