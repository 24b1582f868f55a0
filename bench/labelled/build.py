"""Build the labelled extraction set: news pages in many layouts, each with its known main text.

    python3 bench/labelled/build.py          # writes bench/labelled/pages/*.html and truth/*.txt

Stdlib only and deterministic. The article prose comes from the demo corpus (seeds/demo/articles, written
for this project); what this file adds is the page around it, in the layouts that make extraction hard
on the open web: sidebars and reader comments, live blogs with timestamped updates, tables, photo
captions, pull quotes, paywall teasers, multi-page articles, <br>-separated text without <p>, Q&A
interviews, in-body "related" boxes, lists, JSON-LD-only metadata, cookie walls and author boxes.

What the truth contains (the convention a human labeller follows): the body paragraphs, subheads,
lists, table cells (one row per line), quoted blocks and photo captions (without the photo credit),
live-blog update headlines and texts with their times. What it leaves out: title, standfirst, byline,
pull quotes (they repeat the body), related links, comments, newsletter and paywall promotions,
pagination, navigation and footers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTICLES = ROOT / "seeds" / "demo" / "articles"


@dataclass
class Article:
    id: str
    meta: dict[str, str]
    blocks: list[tuple[str, str]]  # ("p" | "h2", text)

    @property
    def title(self) -> str:
        return self.meta["title"]


def load(article_id: str) -> Article:
    raw = (ARTICLES / f"{article_id}.md").read_text(encoding="utf-8")
    _, front, body = raw.split("---\n", 2)
    meta = {}
    for line in front.splitlines():
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    blocks: list[tuple[str, str]] = []
    for chunk in body.strip().split("\n\n"):
        chunk = " ".join(chunk.split())
        if chunk.startswith("## "):
            blocks.append(("h2", chunk[3:]))
        elif chunk:
            blocks.append(("p", chunk))
    return Article(article_id, meta, blocks)


# ------------------------------------------------------------------------------------------ chrome

SECTIONS = ["World", "Ukraine", "Europe", "Middle East", "Africa", "Business", "Opinion", "Video", "Podcasts"]
TEASERS = [
    ("Parliament extends martial law for another ninety days", "Lawmakers voted by a wide margin on Tuesday to extend martial law and general mobilisation, the eleventh such extension since the full-scale invasion began."),
    ("Grain exports through the Black Sea corridor reach a new monthly high", "Ports in the Odesa region handled more than six million tonnes of cargo last month despite repeated drone attacks on port infrastructure."),
    ("Energy company warns of scheduled outages through the winter", "The national grid operator said that households in several regions should prepare for rolling blackouts of up to eight hours a day."),
    ("Court sentences former official for embezzling funds meant for fortifications", "The anti-corruption court found that the official had signed contracts for defensive lines that were never built in the Kharkiv region."),
    ("Analysts see slower Russian advances as summer offensive stalls", "Military analysts said the pace of Russian gains had slowed in recent weeks as Ukrainian units received fresh supplies of artillery ammunition."),
    ("Aid agencies appeal for funding as displacement grows in Sudan", "The United Nations said its appeal for Sudan was less than a fifth funded, with millions of people displaced by fighting facing hunger."),
    ("How drones changed the war at sea", "Uncrewed surface vessels have forced the Russian fleet to move most of its warships away from occupied Crimea, naval experts say."),
]
COMMENTS = [
    ("Marta K.", "This is heartbreaking. I have family in that district and we could not reach them all morning until the phones came back."),
    ("john_in_leeds", "Why does it take so long for the air defence systems to be delivered when everyone knows what is needed?"),
    ("Oksana", "Thank you for reporting on this. Most channels stopped covering the east months ago and people here feel forgotten."),
    ("P. Novak", "The numbers in the third paragraph do not match what the regional administration posted on its channel yesterday evening."),
    ("realist_77", "Every week the same story and nothing changes. Somebody should ask the ministers why the shelters are still not finished."),
]


def nav(cls: str = "nav") -> str:
    return f'<nav class="{cls}"><ul>' + "".join(
        f'<li><a href="/section/{s.lower().replace(" ", "-")}/">{s}</a></li>' for s in SECTIONS) + "</ul></nav>"


def most_read(title: str = "Most read", n: int = 5, start: int = 0) -> str:
    items = [TEASERS[(start + i) % len(TEASERS)] for i in range(n)]
    return (f'<aside class="sidebar"><h3>{title}</h3><ol>' + "".join(
        f'<li><a href="/news/{i}">{escape(t)}</a><p class="teaser">{escape(d)}</p></li>'
        for i, (t, d) in enumerate(items)) + "</ol></aside>")


def comments(n: int = 4) -> str:
    return (f'<section id="comments" class="comments"><h3>Comments ({n})</h3>' + "".join(
        f'<div class="comment"><div class="comment-author">{escape(a)}</div><div class="comment-body"><p>{escape(t)}</p></div>'
        f'<a class="reply" href="#">Reply</a></div>' for a, t in COMMENTS[:n]) + "</section>")


def footer(site: str) -> str:
    return (f'<footer class="site-footer">{nav("footer-nav")}<p>About us. Contact. Careers. Advertise with us. '
            f'Terms of use. Privacy policy. Cookie settings.</p><p>&copy; 2024 {escape(site)}. All rights reserved. '
            f'Reproduction of material from this site without written permission is prohibited.</p></footer>')


def head(a: Article, site: str, *, lang: str = "en", jsonld_only: bool = False, extra: str = "") -> str:
    title = escape(a.title)
    date = f'{a.meta["date"]}T{a.meta.get("time", "09:00")}:00+03:00'
    if jsonld_only:
        meta = ('<script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle", '
                f'"headline": "{title}", "datePublished": "{date}", '
                f'"author": {{"@type": "Person", "name": "{escape(a.meta["author"])}"}}, '
                f'"publisher": {{"@type": "Organization", "name": "{escape(site)}"}}}}</script>')
    else:
        meta = (f'<meta property="og:title" content="{title}"><meta property="og:site_name" content="{escape(site)}">'
                f'<meta name="author" content="{escape(a.meta["author"])}">'
                f'<meta property="article:published_time" content="{date}">'
                f'<meta name="description" content="{escape(a.meta.get("dek", ""))}">')
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title} | {escape(site)}</title>'
            f'{meta}{extra}<link rel="stylesheet" href="/static/site.css"></head>')


def paras(blocks: list[tuple[str, str]], p_attr: str = "") -> str:
    out = []
    for kind, text in blocks:
        out.append(f"<h2>{escape(text)}</h2>" if kind == "h2" else f"<p{p_attr}>{escape(text)}</p>")
    return "\n".join(out)


def truth_of(blocks: list[tuple[str, str]]) -> list[str]:
    return [text for _, text in blocks]


# ----------------------------------------------------------------------------------------- layouts


def news_sidebar_comments(a: Article, n: int) -> tuple[str, list[str]]:
    site = ["Kyiv Morning Bulletin", "The Eastern Dispatch", "Danube Courier", "Harbour Times"][n % 4]
    body = paras(a.blocks)
    page = (f'{head(a, site, lang=a.meta["lang"])}<body><header><div class="logo">{site}</div>{nav()}'
            f'<div class="breaking">Breaking: air raid alert in several regions</div></header>'
            f'<main class="container"><article class="post"><h1 class="entry-title">{escape(a.title)}</h1>'
            f'<p class="standfirst">{escape(a.meta.get("dek", ""))}</p>'
            f'<div class="byline">By <a rel="author" href="/authors/x">{escape(a.meta["author"])}</a> | {a.meta["date"]}</div>'
            f'<div class="share"><a href="#">Share on Facebook</a> <a href="#">Share on X</a> <a href="#">Email</a></div>'
            f'<div class="entry-content">{body}</div>'
            f'<div class="tags">Tags: <a href="/tag/war">war</a> <a href="/tag/{a.meta.get("section", "news").lower()}">{a.meta.get("section", "News")}</a></div>'
            f'</article>{most_read(start=n)}{comments(3 + n % 3)}</main>{footer(site)}</body></html>')
    return page, truth_of(a.blocks)


def liveblog(arts: list[Article], n: int) -> tuple[str, list[str]]:
    lead = arts[0]
    site = "Frontline Live"
    updates: list[tuple[str, str, list[str]]] = []
    hour, minute = 21, 50
    for a in arts:
        ps = [t for k, t in a.blocks if k == "p"]
        for i in range(0, min(len(ps), 4), 2):
            updates.append((f"{hour:02d}:{minute:02d}", a.title if i == 0 else f"{a.title}: more details", ps[i:i + 2]))
            minute -= 17
            if minute < 0:
                hour, minute = hour - 1, minute + 60
    key_events = "".join(f'<li><a href="#u{i}">{escape(h)}</a></li>' for i, (_, h, _) in enumerate(updates[:5]))
    items, truth = [], []
    for i, (when, headline, ps) in enumerate(updates):
        items.append(f'<div class="live-update" id="u{i}"><div class="live-meta"><time datetime="2024-06-10T{when}:00+03:00">{when}</time>'
                     f'<a class="permalink" href="#u{i}">Link copied</a></div><h3>{escape(headline)}</h3>'
                     + "".join(f"<p>{escape(p)}</p>" for p in ps)
                     + '<div class="live-share"><button>Share</button></div></div>')
        truth.extend([when, headline, *ps])
    page = (f'{head(lead, site)}<body><header>{nav()}</header><main><div class="live-header"><span class="live-badge">LIVE</span>'
            f'<h1>Russia-Ukraine war live: {escape(lead.title)}</h1><p class="summary">Follow our live coverage; all times are Kyiv time.</p></div>'
            f'<div class="key-events"><h2>Key events</h2><ul>{key_events}</ul></div>'
            f'<div class="live-blog">{"".join(items)}</div><button class="load-more">Load more updates</button></main>'
            f'{most_read("Trending", 4, n)}{footer(site)}</body></html>')
    return page, truth


TABLE_ROWS = [
    ("Kharkiv region", "14", "52", "310"), ("Donetsk region", "21", "67", "455"), ("Zaporizhzhia region", "9", "31", "208"),
    ("Kherson region", "12", "40", "276"), ("Dnipropetrovsk region", "5", "18", "97"), ("Sumy region", "3", "11", "64"),
]


def table_page(a: Article, n: int) -> tuple[str, list[str]]:
    site = "The Eastern Dispatch"
    rows = TABLE_ROWS[n % 2: n % 2 + 5]
    header = ("Region", "Killed", "Injured", "Buildings damaged")
    table = ('<table class="data"><caption>Civilian casualties and damage by region, first week of June</caption><thead><tr>'
             + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")
    intro = ("Figures compiled from the regional military administrations show how the attacks were spread across "
             "the front-line regions during the week, with the heaviest toll in the east.")
    blocks = a.blocks[:2] + [("p", intro)]
    rest = a.blocks[2:]
    body = paras(blocks) + table + paras(rest)
    truth = truth_of(blocks) + ["Civilian casualties and damage by region, first week of June", " ".join(header)]
    truth += [" ".join(r) for r in rows] + truth_of(rest)
    page = (f'{head(a, site)}<body>{nav()}<div class="wrap"><div class="main-col"><h1>{escape(a.title)}</h1>'
            f'<span class="date">{a.meta["date"]}</span><div class="article-body">{body}</div></div>'
            f'{most_read("Latest", 6, n)}</div>{footer(site)}</body></html>')
    return page, truth


def captions_page(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Harbour Times"
    caption = a.meta.get("caption") or "Rescue workers at the scene of the strike."
    text, _, credit = caption.partition(" Photo:")
    second = "Residents clear debris from a damaged apartment block the morning after the attack."
    out, truth = [], []
    for i, (kind, t) in enumerate(a.blocks):
        out.append(f"<h2>{escape(t)}</h2>" if kind == "h2" else f"<p>{escape(t)}</p>")
        truth.append(t)
        if i in (1, 4):
            cap = text if i == 1 else second
            out.append(f'<figure class="wp-block-image"><img src="/img/{i}.jpg" alt="{escape(cap)}">'
                       f'<figcaption>{escape(cap)} <span class="credit">Photo: {escape(credit.strip() or "Reuters")}</span></figcaption></figure>')
            truth.append(cap)
    page = (f'{head(a, site)}<body><div id="app"><div class="topbar">{nav()}</div><div class="story"><h1>{escape(a.title)}</h1>'
            f'<figure class="hero"><img src="/img/hero.jpg" alt=""><figcaption>{escape(text)}</figcaption></figure>'
            f'<div class="story-body">{"".join(out)}</div></div>{most_read("Editor picks", 4, n)}</div>{footer(site)}</body></html>')
    # the hero caption repeats the first in-body caption: the labeller keeps it once
    return page, truth


def pullquote_page(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Danube Courier"
    quote = a.meta.get("pullquote") or a.blocks[1][1].split(". ")[0]
    out = []
    for i, (kind, t) in enumerate(a.blocks):
        out.append(f"<h2>{escape(t)}</h2>" if kind == "h2" else f"<p>{escape(t)}</p>")
        if i == 2:
            out.append(f'<aside class="pullquote"><blockquote><p>&ldquo;{escape(quote)}&rdquo;</p></blockquote></aside>')
    page = (f'{head(a, site)}<body>{nav()}<div class="layout"><article><header><h1>{escape(a.title)}</h1>'
            f'<p class="dek">{escape(a.meta.get("dek", ""))}</p></header><section class="article__body">{"".join(out)}</section>'
            f'<section class="newsletter"><h4>Get the Courier in your inbox</h4><p>Our editors pick the most important stories '
            f'of the day and send them to you every morning at seven.</p><input type="email"><button>Sign up</button></section>'
            f'</article>{most_read(start=n)}</div>{footer(site)}</body></html>')
    return page, truth_of(a.blocks)


def paywall_page(a: Article, n: int) -> tuple[str, list[str]]:
    site = "The Ledger of Kyiv"
    visible = a.blocks[:3]
    page = (f'{head(a, site)}<body>{nav()}<main><h1>{escape(a.title)}</h1><div class="byline">{escape(a.meta["author"])}</div>'
            f'<div class="article-content">{paras(visible)}</div>'
            f'<div class="paywall"><h3>Subscribe to continue reading</h3><p>Independent journalism from the front line '
            f'costs money. Subscribe today for full access to all our reporting, analysis and investigations, from just '
            f'one euro for the first month. Cancel at any time.</p><ul><li>Unlimited articles on all devices</li>'
            f'<li>Exclusive newsletters from our correspondents</li><li>An ad-free reading experience</li></ul>'
            f'<a class="btn" href="/subscribe">Subscribe now</a> <a href="/login">Already a subscriber? Log in</a></div>'
            f'</main>{most_read("Popular", 5, n)}{footer(site)}</body></html>')
    return page, truth_of(visible)


def multipage(a: Article, n: int, part: int) -> tuple[str, list[str]]:
    site = "Steppe Chronicle"
    half = len(a.blocks) // 2
    blocks = a.blocks[:half] if part == 1 else a.blocks[half:]
    pager = (f'<div class="pagination"><span>Page {part} of 2</span> '
             + ('<a rel="next" href="?page=2">Next page &raquo;</a>' if part == 1 else '<a rel="prev" href="?page=1">&laquo; Previous page</a>')
             + "</div>")
    page = (f'{head(a, site)}<body>{nav()}<div class="content"><h1>{escape(a.title)}{" (continued)" if part == 2 else ""}</h1>'
            f'<div class="text">{paras(blocks)}</div>{pager}</div>{most_read("Read next", 5, n)}{footer(site)}</body></html>')
    return page, truth_of(blocks)


def br_soup(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Oblast News 24"
    text = "<br><br>\n".join(f"<b>{escape(t)}</b>" if k == "h2" else escape(t) for k, t in a.blocks)
    page = (f'{head(a, site)}<body><table width="100%"><tr><td class="left" width="180">{nav("menu")}</td>'
            f'<td class="center"><div class="title">{escape(a.title)}</div><div class="date">{a.meta["date"]}</div>'
            f'<div class="newstext">{text}</div></td><td class="right" width="200">{most_read("Top news", 7, n)}</td></tr></table>'
            f'{footer(site)}</body></html>')
    return page, truth_of(a.blocks)


def related_inline(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Morning Star of Odesa"
    out = []
    for i, (kind, t) in enumerate(a.blocks):
        out.append(f"<h2>{escape(t)}</h2>" if kind == "h2" else f"<p>{escape(t)}</p>")
        if i == 1:
            out.append('<div class="related-inline"><h4>Related</h4><ul>' + "".join(
                f'<li><a href="/r/{j}">{escape(TEASERS[j][0])}</a></li>' for j in range(3)) + "</ul></div>")
        if i == 3:
            out.append(f'<p class="read-more"><strong>Read more:</strong> <a href="/r/9">{escape(TEASERS[4][0])}</a></p>')
        if i == 5:
            out.append('<div class="inline-newsletter"><p>Sign up for our daily briefing: the war in five minutes, '
                       'every weekday morning.</p><button>Subscribe</button></div>')
    page = (f'{head(a, site)}<body>{nav()}<article class="article"><h1>{escape(a.title)}</h1>'
            f'<div class="article-text">{"".join(out)}</div></article>{comments(4)}{footer(site)}</body></html>')
    return page, truth_of(a.blocks)


def interview(a: Article, n: int) -> tuple[str, list[str]]:
    site = "The Eastern Dispatch"
    ps = [t for k, t in a.blocks if k == "p"]
    questions = ["What did you see when you arrived?", "How are people coping now?", "What happens next?",
                 "Do officials have a plan?", "What do you need most?"]
    out, truth = [f"<p>{escape(ps[0])}</p>"], [ps[0]]
    for q, answer in zip(questions, ps[1:], strict=False):
        out.append(f"<p><strong>Q: {escape(q)}</strong></p><p>A: {escape(answer)}</p>")
        truth += [f"Q: {q}", f"A: {answer}"]
    page = (f'{head(a, site)}<body>{nav()}<div class="interview"><h1>Interview: {escape(a.title)}</h1>'
            f'<div class="body">{"".join(out)}</div><div class="author-box"><img src="/a.jpg"><p>{escape(a.meta["author"])} '
            f'is a correspondent covering eastern Ukraine. She has reported from the front line since 2014 and previously '
            f'worked for regional television.</p></div></div>{most_read(start=n)}{footer(site)}</body></html>')
    return page, truth


def with_list(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Harbour Times"
    known = ["At least three districts were affected by the strikes overnight.",
             "Emergency crews are still searching the rubble for survivors.",
             "Officials have opened temporary shelters in two schools."]
    blocks = a.blocks[:2]
    rest = a.blocks[2:]
    body = (paras(blocks) + "<h2>What we know so far</h2><ul>" + "".join(f"<li>{escape(k)}</li>" for k in known) + "</ul>" + paras(rest))
    page = (f'{head(a, site)}<body>{nav()}<div class="c-article"><h1>{escape(a.title)}</h1><div class="c-article__body">{body}</div></div>'
            f'{most_read(start=n)}{footer(site)}</body></html>')
    return page, truth_of(blocks) + ["What we know so far", *known] + truth_of(rest)


def jsonld_amp(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Odesa Daily"
    page = (f'{head(a, site, jsonld_only=True)}<body><amp-sidebar id="sb">{nav()}</amp-sidebar><div class="amp-wp-article">'
            f'<header class="amp-wp-article-header"><h1 class="amp-wp-title">{escape(a.title)}</h1></header>'
            f'<div class="amp-wp-article-content">{paras(a.blocks)}</div><footer class="amp-wp-article-footer">'
            f'<div class="amp-wp-meta">Categories: News, Ukraine</div></footer></div>{footer(site)}</body></html>')
    return page, truth_of(a.blocks)


def cookie_wall(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Kyiv Morning Bulletin"
    wall = ('<div id="consent" class="cmp"><h2>We value your privacy</h2><p>We and our 842 partners store and access '
            'information on your device, such as cookies, and process personal data, such as unique identifiers and '
            'standard information sent by a device, for personalised advertising and content, advertising and content '
            'measurement, audience research and services development.</p><button>Accept all</button><button>Manage options</button></div>')
    bio = (f'<div class="author-bio"><h4>About the author</h4><p>{escape(a.meta["author"])} covers security and defence. '
           'Before joining the Bulletin, they worked as a news editor at a regional radio station for eight years.</p></div>')
    page = (f'{head(a, site)}<body>{wall}<header>{nav()}</header><div class="main"><article><h1>{escape(a.title)}</h1>'
            f'<div class="article__content">{paras(a.blocks)}</div>{bio}</article>{most_read(start=n)}</div>{footer(site)}</body></html>')
    return page, truth_of(a.blocks)


def wire_brief(a: Article, n: int) -> tuple[str, list[str]]:
    site = "Kyiv Morning Bulletin"
    blocks = [b for b in a.blocks if b[0] == "p"][:1]
    page = (f'{head(a, site)}<body><header>{nav()}</header><main><article><h1>{escape(a.title)}</h1>'
            f'<div class="article-body">{paras(blocks)}<p class="wire">(Reporting by the newsroom; editing by the desk)</p></div>'
            f'</article>{most_read("More news", 7, n)}{comments(2)}</main>{footer(site)}</body></html>')
    return page, truth_of(blocks)


# ------------------------------------------------------------------------------------ page weight

SUBSECTIONS = ["Latest", "Analysis", "Explainers", "Maps", "Photos", "Video", "Live", "Investigations", "Opinion",
               "Newsletters"]


def weight(page: str, n: int) -> str:
    """What real news pages carry around the article (they weigh 100-300 KB, not the 10 KB of the
    article): inline scripts with the app's JSON state and analytics, a stylesheet, an SVG sprite,
    a mega menu, a "latest news" rail and a footer link farm. None of it is article text; all of it is
    work for an extractor, which is what makes the speed comparison honest.
    """
    state = [{"id": 10_000 + n * 100 + i, "headline": TEASERS[(n + i) % len(TEASERS)][0],
              "dek": TEASERS[(n + i) % len(TEASERS)][1], "url": f"/news/{n}/{i}", "section": SECTIONS[i % len(SECTIONS)],
              "tags": ["war", "politics", "economy"][: 1 + i % 3], "image": {"src": f"/img/{n}-{i}.jpg", "w": 1200, "h": 675}}
             for i in range(60)]
    scripts = (f'<script>window.__STATE__ = {json.dumps({"page": n, "teasers": state})};</script>'
               '<script>(function(w,d){w.dataLayer=w.dataLayer||[];function g(){dataLayer.push(arguments)}'
               + "".join(f"g('event','view_{i}',{{'section':'{s}','n':{i}}});" for i, s in enumerate(SECTIONS * 8))
               + "})(window,document);</script>")
    style = "<style>" + "".join(f".c{i}{{margin:{i % 7}px;padding:{i % 5}px;color:#{i * 2731 % 0xFFFFFF:06x}}}"
                                for i in range(400)) + "</style>"
    sprite = ('<svg style="display:none">' + "".join(
        f'<symbol id="i{i}" viewBox="0 0 24 24"><path d="M{i % 24} 2L{(i * 7) % 24} 22L2 {i % 20}Z"/></symbol>'
        for i in range(80)) + "</svg>")
    mega = ('<div class="mega-menu">' + "".join(
        f'<div class="mm-col"><h4>{s}</h4><ul>' + "".join(f'<li><a href="/{s.lower()}/{t.lower()}">{t}</a></li>'
                                                          for t in SUBSECTIONS) + "</ul></div>" for s in SECTIONS)
        + "</div>")
    rail = ('<section class="latest-rail"><h3>Latest news</h3><ul>' + "".join(
        f'<li><time>{(9 + i) % 24:02d}:{(i * 7) % 60:02d}</time> <a href="/l/{i}">{escape(TEASERS[(n + i) % len(TEASERS)][0])}</a></li>'
        for i in range(20)) + "</ul></section>")
    farm = ('<div class="footer-links">' + "".join(
        f'<a href="/{s.lower()}/{t.lower()}">{s} {t}</a> ' for s in SECTIONS for t in SUBSECTIONS[:6]) + "</div>")
    page = page.replace("</head>", f"{scripts}{style}</head>", 1)
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + sprite + mega, page, count=1)
    return page.replace("</body>", f"{rail}{farm}</body>", 1)


SPECS: list[tuple[str, str, list[str], dict]] = [
    ("news-sidebar-comments", "news_sidebar_comments", ["kw01"], {}),
    ("news-sidebar-comments", "news_sidebar_comments", ["fp03"], {}),
    ("news-sidebar-comments", "news_sidebar_comments", ["sh05"], {}),
    ("news-sidebar-comments", "news_sidebar_comments", ["kw07"], {}),
    ("news-sidebar-comments", "news_sidebar_comments", ["sh04"], {}),
    ("liveblog", "liveblog", ["kw02", "kw03", "fp02"], {}),
    ("liveblog", "liveblog", ["sh02", "fp04"], {}),
    ("liveblog", "liveblog", ["kw05", "sh03", "fp09", "kw08"], {}),
    ("table", "table_page", ["fp01"], {}),
    ("table", "table_page", ["sh06"], {}),
    ("table", "table_page", ["kw04"], {}),
    ("captions", "captions_page", ["kw09"], {}),
    ("captions", "captions_page", ["fp05"], {}),
    ("captions", "captions_page", ["sh08"], {}),
    ("pullquote", "pullquote_page", ["kw10"], {}),
    ("pullquote", "pullquote_page", ["fp07"], {}),
    ("pullquote", "pullquote_page", ["sh09"], {}),
    ("paywall", "paywall_page", ["fp08"], {}),
    ("paywall", "paywall_page", ["kw11"], {}),
    ("paywall", "paywall_page", ["sh10"], {}),
    ("multipage-1", "multipage", ["kw12"], {"part": 1}),
    ("multipage-2", "multipage", ["kw12"], {"part": 2}),
    ("multipage-1", "multipage", ["sh11"], {"part": 1}),
    ("br-soup", "br_soup", ["fp10"], {}),
    ("br-soup", "br_soup", ["kw13"], {}),
    ("related-inline", "related_inline", ["fp11"], {}),
    ("related-inline", "related_inline", ["sh12"], {}),
    ("interview", "interview", ["kw14"], {}),
    ("list", "with_list", ["fp12"], {}),
    ("jsonld-amp", "jsonld_amp", ["sh13"], {}),
    ("cookie-wall", "cookie_wall", ["sh01"], {}),
    ("wire-brief", "wire_brief", ["fp13"], {}),
    ("news-sidebar-comments", "news_sidebar_comments", ["fp06"], {}),
    ("table", "table_page", ["kw06"], {}),
]


def main() -> None:
    pages, truth = HERE / "pages", HERE / "truth"
    for folder in (pages, truth):
        folder.mkdir(exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    for n, (name, builder, ids, extra) in enumerate(SPECS, start=1):
        arts = [load(i) for i in ids]
        fn = globals()[builder]
        html, text = fn(arts, n) if builder == "liveblog" else fn(arts[0], n, **extra)
        lang = arts[0].meta["lang"]
        stem = f"{n:02d}-{name}{'' if lang == 'en' else '-' + lang}-{ids[0]}"
        (pages / f"{stem}.html").write_text(weight(html, n), encoding="utf-8")
        (truth / f"{stem}.txt").write_text("\n".join(re.sub(r"\s+", " ", t).strip() for t in text) + "\n", encoding="utf-8")
    print(f"wrote {len(SPECS)} pages to {pages}")


if __name__ == "__main__":
    main()
