#!/usr/bin/env python3
"""Build the offline demo corpus under seeds/demo/sites/ from seeds/demo/articles/*.md.

Standard library only. Run from anywhere:

    python3 seeds/demo/build_corpus.py           # (re)generate sites/ and MANIFEST.yaml
    python3 seeds/demo/build_corpus.py --check   # validate the article data, write nothing

Article files
-------------
Each ``articles/<id>.md`` starts with a front-matter block between ``---`` lines of
``key: value`` pairs (lists as ``[a, b, c]``; empty value means null), followed by the
body: paragraphs separated by blank lines, ``## `` lines are subheadings.

A syndicated copy has ``copy_of: <id of the original>``; its body is derived from the
original (``drop_paragraph`` removes the n-th paragraph, 1-based, headings not counted;
the copy file's own body, if any, is inserted after paragraph ``add_after``; quotes are
typographic; ``dateline`` is prefixed to the first paragraph; ``keep_headings: no`` drops
subheadings).  ``canonical: self`` or an URL (may use ``{{BASE:<site>}}``).

Date fields: ``date``/``time`` are local Kyiv time (+03:00).  ``date_meta: yes`` puts the
date in the page head (article:published_time, <time>, JSON-LD on frontline-post);
``date_meta: no`` leaves it only in the URL (kyiv-wire) or only in the feed;
``date_none: yes`` additionally guarantees no date at all on the page.

Placeholders
------------
Every absolute URL is written as ``{{BASE}}/path`` (the serving site's own base URL)
or ``{{BASE:<site-folder>}}/path`` (another demo site).  The server substitutes them at
serve time.  URL paths map 1:1 onto files under ``sites/<site>/`` (query strings ignored,
``/`` -> ``index.html``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARTICLES = HERE / "articles"
SITES_DIR = HERE / "sites"
MANIFEST = HERE / "MANIFEST.yaml"
KYIV_TZ = dt.timezone(dt.timedelta(hours=3))

TRACKING_ARTICLE = "kw05"
TRACKING_QUERY = "utm_source=rss&utm_medium=feed&fbclid=abc123"


# --------------------------------------------------------------------------- sites

@dataclass(frozen=True)
class Site:
    folder: str
    name: str
    feed_file: str
    feed_format: str  # rss2 | atom | rss2-broken
    tagline: str
    guid_prefix: str


SITES = {
    "kyiv-wire": Site("kyiv-wire", "Kyiv Wire", "rss.xml", "rss2",
                      "Independent news from Ukraine, around the clock", "kyiv-wire-"),
    "frontline-post": Site("frontline-post", "The Frontline Post", "atom.xml", "atom",
                           "Reporting from the world's conflict zones", "tag:frontline-post.example,2024:"),
    "steppe-herald": Site("steppe-herald", "Steppe Herald", "feed.xml", "rss2-broken",
                          "News from the south and east", ""),
}

# Same-topic groups: distinct stories, same town, same day -- must NOT be merged.
SAME_TOPIC = {
    "T1": {"place": "Kharkiv", "date": "2024-06-03",
           "note": "glide bomb on printing works vs. Vovchansk evacuees arriving in Kharkiv"},
    "T2": {"place": "Odesa", "date": "2024-06-10",
           "note": "overnight drone attack on the port vs. evening rally of families of missing soldiers"},
    "T3": {"place": "Pokrovsk", "date": "2024-06-14",
           "note": "missile strike at the railway station vs. coal mine halting operations"},
}

# --------------------------------------------------------------------------- data

@dataclass
class Article:
    id: str
    meta: dict
    blocks: list  # [("p"|"h", text)]
    original: "Article | None" = None
    copies: list = field(default_factory=list)

    def __getattr__(self, key):  # convenience: a.title, a.site ...
        meta = self.__dict__.get("meta", {})
        if key in meta:
            return meta[key]
        raise AttributeError(key)

    @property
    def published(self) -> dt.datetime:
        h, m = (int(x) for x in self.meta["time"].split(":"))
        d = dt.date.fromisoformat(self.meta["date"])
        return dt.datetime(d.year, d.month, d.day, h, m, tzinfo=KYIV_TZ)

    @property
    def paragraphs(self) -> list[str]:
        return [t for k, t in self.blocks if k == "p"]

    @property
    def text(self) -> str:
        return "\n\n".join(t for _, t in self.blocks)

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def url(self) -> str:
        return "{{BASE}}" + self.meta["path"]

    @property
    def canonical(self) -> str:
        c = self.meta.get("canonical")
        return self.url if c in (None, "self") else c


def parse_value(raw: str):
    raw = raw.strip()
    if raw == "" or raw == "null":
        return None
    if raw in ("yes", "true"):
        return True
    if raw in ("no", "false"):
        return False
    if raw.startswith("[") and raw.endswith("]"):
        return [x.strip() for x in raw[1:-1].split(",") if x.strip()]
    return raw


def read_article(path: Path) -> Article:
    text = path.read_text(encoding="utf-8")
    m = re.match(r"---\n(.*?)\n---\n?(.*)\Z", text, re.S)
    if not m:
        raise ValueError(f"{path}: no front matter")
    meta = {}
    for line in m.group(1).splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        meta[key.strip()] = parse_value(value)
    blocks = []
    for chunk in re.split(r"\n\s*\n", m.group(2).strip()):
        chunk = " ".join(chunk.split())
        if not chunk:
            continue
        if chunk.startswith("## "):
            blocks.append(("h", chunk[3:].strip()))
        else:
            blocks.append(("p", chunk))
    if meta.get("id") != path.stem:
        raise ValueError(f"{path}: id {meta.get('id')!r} does not match file name")
    return Article(path.stem, meta, blocks)


def typographic(text: str) -> str:
    out, opening = [], True
    for ch in text:
        if ch == '"':
            out.append("\u201c" if opening else "\u201d")
            opening = not opening
        elif ch == "'":
            out.append("\u2019")
        else:
            out.append(ch)
    return "".join(out)


def derive_copy(copy: Article, original: Article) -> None:
    extra = [t for k, t in copy.blocks if k == "p"]
    drop = int(copy.meta["drop_paragraph"]) if copy.meta.get("drop_paragraph") else None
    add_after = int(copy.meta["add_after"]) if copy.meta.get("add_after") else None
    keep_headings = copy.meta.get("keep_headings", True)
    blocks, n = [], 0
    for kind, t in original.blocks:
        if kind == "h":
            if keep_headings:
                blocks.append((kind, t))
            continue
        n += 1
        if n != drop:
            blocks.append(("p", typographic(t)))
        if add_after == n:
            blocks.extend(("p", typographic(e)) for e in extra)
    if copy.meta.get("dateline"):
        k, first = blocks[0]
        blocks[0] = (k, f"{copy.meta['dateline']} {first}")
    copy.blocks = blocks
    copy.original = original
    original.copies.append(copy)
    for key in ("lang", "section", "events", "syndication", "same_topic"):
        copy.meta.setdefault(key, original.meta.get(key))
    body = copy.text.lower()
    # a copy mentions what the original mentions, minus anything only in a dropped paragraph
    for key in ("places", "actors"):
        copy.meta[key] = [x for x in original.meta[key] if x.lower() in body]


def load_articles() -> dict[str, Article]:
    arts = {p.stem: read_article(p) for p in sorted(ARTICLES.glob("*.md"))}
    for a in arts.values():
        if a.meta.get("copy_of"):
            derive_copy(a, arts[a.meta["copy_of"]])
    return arts


def validate(arts: dict[str, Article]) -> list[str]:
    errors = []
    for a in arts.values():
        m = a.meta
        if m["site"] not in SITES:
            errors.append(f"{a.id}: unknown site {m['site']}")
        if not (350 <= a.words <= 900):
            errors.append(f"{a.id}: {a.words} words, want 350-900")
        if m["site"] == "kyiv-wire" and not m["path"].startswith("/" + m["date"].replace("-", "/") + "/"):
            errors.append(f"{a.id}: kyiv-wire path must start with the date")
        if m.get("lang") == "en":
            low = a.text.lower()
            for key in ("places", "actors"):
                for x in m[key]:
                    if x.lower() not in low:
                        errors.append(f"{a.id}: {key[:-1]} {x!r} not mentioned in the text")
        if m.get("pullquote") and m["pullquote"][:30] not in a.text:
            errors.append(f"{a.id}: pull quote is not a sentence of the body")
    paths = [(a.site, a.path) for a in arts.values()]
    if len(paths) != len(set(paths)):
        errors.append("duplicate paths")
    return errors


# --------------------------------------------------------------------------- helpers

E = html.escape


def h(text: str) -> str:
    return E(text, quote=True)


def pick(seq, key: str, n: int):
    """Deterministic pseudo-random choice of n items, seeded by key."""
    scored = sorted(seq, key=lambda x: hashlib.sha256((key + repr(x)).encode()).hexdigest())
    return scored[:n]


COMMENTS = {
    "en": [
        ("Marko_L", "Thank you for reporting from places most outlets have forgotten. Please keep going."),
        ("dnipro_dad", "Every time I read something like this I check on my parents twice as often."),
        ("Anna K.", "The part about the volunteers is the real story. They hold everything together."),
        ("observer77", "Would be good to see a map with these places, hard to follow for readers abroad."),
        ("Halyna P.", "My cousin lives two streets from there. They are fine, thank God, but the windows are gone."),
        ("J. Whitfield", "Sobering reading. The world should be paying far more attention to this."),
        ("taras_from_lviv", "Air defence, air defence, air defence. Nothing else matters as much right now."),
        ("Sam R.", "Is there a way to donate directly to the people mentioned in the article?"),
        ("kateryna.m", "Strength to everyone there. We remember you."),
        ("Peter in Leeds", "Excellent, balanced piece. Appreciate that you note what could not be verified."),
        ("oleh_b", "Numbers like these become normal and that is the scariest thing."),
        ("Ines", "I visited this place before the war. Hard to believe it is the same town."),
        ("vasyl.k", "The photo says more than the whole article. Heartbreaking."),
        ("M. Okafor", "Thank you for covering this region too, not only the headlines."),
    ],
    "uk": [
        ("Оксана", "Дякую за репортаж. Тримаймося."),
        ("Андрій К.", "Там живуть мої батьки. Дуже важко це читати."),
        ("Марія_Л", "Вічна пам'ять загиблим. Сили всім, хто там залишається."),
        ("Петро", "Потрібно більше ППО. Без цього так і буде далі."),
    ],
    "ru": [
        ("Игорь", "Спасибо за информацию, в наших новостях об этом молчат."),
        ("Наталья В.", "Берегите себя. Страшно читать."),
        ("Сергей_Д", "Когда же это всё закончится..."),
        ("Ольга", "Хорошо, что пишете по-русски, так больше людей узнают правду."),
    ],
}
AGO = ["12 minutes ago", "an hour ago", "2 hours ago", "3 hours ago", "5 hours ago", "yesterday"]


def comments_for(a: Article) -> list[tuple[str, str, str]]:
    pool = COMMENTS.get(a.lang, COMMENTS["en"])
    n = 2 + int(hashlib.sha256(a.id.encode()).hexdigest(), 16) % 3  # 2..4
    chosen = pick(pool, a.id, n)
    return [(who, what, AGO[i % len(AGO)]) for i, (who, what) in enumerate(chosen)]


def body_html(a: Article, figure: str, after_fig: int, pull: str, indent: str = "        ") -> str:
    out, n = [], 0
    for kind, t in a.blocks:
        if kind == "h":
            out.append(f"<h2>{h(t)}</h2>")
            continue
        n += 1
        # whitespace noise, differs per page: double spaces / a line break inside paragraphs
        txt = h(t)
        if a.meta.get("copy_of") and n % 3 == 0:
            txt = txt.replace(". ", ".  \n" + indent + "  ", 1)
        out.append(f"<p>{txt}</p>")
        if n == after_fig and figure:
            out.append(figure)
        if n == 3 and pull:
            out.append(pull)
    return ("\n" + indent).join(out)


def iso(a: Article) -> str:
    return a.published.isoformat()


# --------------------------------------------------------------------------- kyiv-wire

KW_NAV = [("News", "/news/"), ("Ukraine", "/ukraine/"), ("Frontline", "/frontline/"),
          ("Kharkiv", "/tag/kharkiv/"), ("Donbas", "/tag/donbas/"), ("South", "/tag/south/"),
          ("Kyiv", "/tag/kyiv/"), ("Economy", "/economy/"), ("Energy", "/tag/energy/"),
          ("World", "/world/"), ("Opinion", "/opinion/"), ("Investigations", "/investigations/"),
          ("Photo", "/photo/"), ("Video", "/video/"), ("Українською", "/uk/"), ("Podcasts", "/podcasts/")]


def render_kyiv_wire(a: Article, site_arts: list[Article]) -> str:
    others = [x for x in site_arts if x.id != a.id]
    most_read = pick(others, a.id + "mr", 5)
    nav = "\n".join(f'          <li><a href="{{{{BASE}}}}{p}">{E(t)}</a></li>' for t, p in KW_NAV)
    mr = "\n".join(
        f'          <li><a href="{{{{BASE}}}}{x.path}">{h(x.title)}</a><p class="teaser">{h(x.dek)}</p></li>'
        for x in most_read)
    date_meta = a.meta.get("date_meta")
    head_date = (f'  <meta property="article:published_time" content="{iso(a)}">\n'
                 if date_meta else "")
    visible_date = (f'<time class="kw-date" datetime="{iso(a)}">{a.published.strftime("%d %B %Y, %H:%M")}</time>'
                    if date_meta else "")
    figure = (f'<figure class="kw-photo">\n          <img src="{{{{BASE}}}}/static/photo.svg" alt="{h(a.caption)}" width="960" height="540">\n'
              f'          <figcaption>{h(a.caption)}</figcaption>\n        </figure>')
    pull = (f'<blockquote class="pullquote"><p>{h(a.pullquote)}</p></blockquote>' if a.meta.get("pullquote") else "")
    comments = "\n".join(
        f'          <li class="comment"><div class="comment-author">{h(w)}</div>'
        f'<div class="comment-time">{t}</div><div class="comment-body"><p>{h(c)}</p></div></li>'
        for w, c, t in comments_for(a))
    lang = a.lang
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{h(a.title)} | Kyiv Wire</title>
  <meta name="description" content="{h(a.dek)}">
  <meta name="author" content="{h(a.author)}">
  <link rel="canonical" href="{a.canonical}">
  <meta property="og:site_name" content="Kyiv Wire">
  <meta property="og:title" content="{h(a.title)}">
  <meta property="og:url" content="{a.url}">
  <meta property="og:type" content="article">
  <meta property="og:image" content="{{{{BASE}}}}/static/photo.svg">
{head_date}  <meta property="article:section" content="{h(a.section)}">
  <link rel="alternate" type="application/rss+xml" title="Kyiv Wire" href="{{{{BASE}}}}/rss.xml">
  <link rel="stylesheet" href="{{{{BASE}}}}/static/kw.css">
</head>
<body class="kw-article">
  <div id="cookie-consent" class="cookie-banner" role="dialog">
    <p>Kyiv Wire uses cookies to measure readership and remember your preferences. See our <a href="{{{{BASE}}}}/privacy/">privacy policy</a>.</p>
    <button type="button">Accept all</button> <button type="button">Only necessary</button>
  </div>
  <header class="kw-masthead">
    <a class="kw-logo" href="{{{{BASE}}}}/">Kyiv Wire</a>
    <span class="kw-tagline">Independent news from Ukraine, around the clock</span>
    <a class="kw-donate" href="{{{{BASE}}}}/support/">Support us</a>
    <nav class="kw-nav" aria-label="Main">
      <ul>
{nav}
      </ul>
    </nav>
  </header>
  <div class="kw-ticker">Air raid alerts: check your region's official channels.</div>
  <main class="kw-main">
    <nav class="breadcrumb" aria-label="Breadcrumb">
      <a href="{{{{BASE}}}}/">Home</a> &rsaquo; <a href="{{{{BASE}}}}/news/">News</a> &rsaquo; <a href="{{{{BASE}}}}/{a.section.lower()}/">{h(a.section)}</a>
    </nav>
    <article class="kw-story">
      <header>
        <h1>{h(a.title)}</h1>
        <p class="kw-standfirst">{h(a.dek)}</p>
        <div class="byline">By <a rel="author" href="{{{{BASE}}}}/authors/{slug(a.author)}/">{h(a.author)}</a> {visible_date}</div>
      </header>
      <div class="kw-body">
        {body_html(a, figure, 1, pull)}
      </div>
      <div class="kw-tags">Topics: {", ".join(f'<a href="{{{{BASE}}}}/tag/{slug(p)}/">{h(p)}</a>' for p in a.places[:4])}</div>
      <div class="kw-share">Share: <a href="{{{{BASE}}}}/share/?via=telegram">Telegram</a> <a href="{{{{BASE}}}}/share/?via=x">X</a> <a href="{{{{BASE}}}}/share/?via=facebook">Facebook</a></div>
    </article>
    <section class="newsletter-signup">
      <h3>The Morning Wire</h3>
      <p>Get the night's events in Ukraine in your inbox before 7 a.m. Free, every day.</p>
      <form action="{{{{BASE}}}}/newsletter/subscribe" method="post"><input type="email" name="email" placeholder="Your email"> <button>Subscribe</button></form>
    </section>
    <section id="comments" class="comments">
      <h3>Comments</h3>
      <ol class="comment-list">
{comments}
      </ol>
      <p class="comment-policy">Comments are moderated. Please be civil.</p>
    </section>
  </main>
  <aside class="kw-sidebar">
    <section class="most-read">
      <h3>Most read</h3>
      <ol>
{mr}
      </ol>
    </section>
    <section class="kw-ad">Advertisement</section>
  </aside>
  <footer class="kw-footer">
    <div class="kw-footer-cols">
      <ul><li><a href="{{{{BASE}}}}/about/">About us</a></li><li><a href="{{{{BASE}}}}/team/">Our team</a></li><li><a href="{{{{BASE}}}}/standards/">Editorial standards</a></li><li><a href="{{{{BASE}}}}/corrections/">Corrections</a></li><li><a href="{{{{BASE}}}}/jobs/">Jobs</a></li></ul>
      <ul><li><a href="{{{{BASE}}}}/ukraine/">Ukraine</a></li><li><a href="{{{{BASE}}}}/world/">World</a></li><li><a href="{{{{BASE}}}}/economy/">Economy</a></li><li><a href="{{{{BASE}}}}/opinion/">Opinion</a></li><li><a href="{{{{BASE}}}}/uk/">Українською</a></li></ul>
      <ul><li><a href="{{{{BASE}}}}/rss.xml">RSS</a></li><li><a href="{{{{BASE}}}}/newsletter/">Newsletters</a></li><li><a href="{{{{BASE}}}}/support/">Donate</a></li><li><a href="{{{{BASE}}}}/contact/">Contact</a></li><li><a href="{{{{BASE}}}}/advertise/">Advertise</a></li></ul>
      <ul><li><a href="{{{{BASE}}}}/privacy/">Privacy policy</a></li><li><a href="{{{{BASE}}}}/terms/">Terms of use</a></li><li><a href="{{{{BASE}}}}/cookies/">Cookie settings</a></li></ul>
    </div>
    <p class="copyright">&copy; 2024 Kyiv Wire. All rights reserved. Reproduction only with a hyperlink to the source.</p>
  </footer>
</body>
</html>
"""


# --------------------------------------------------------------------------- frontline-post

FP_NAV = [("World", "/world/"), ("Ukraine", "/news/ukraine/"), ("Russia", "/news/russia/"),
          ("Middle East", "/news/middle-east/"), ("Africa", "/news/africa/"), ("Asia", "/news/asia/"),
          ("Americas", "/news/americas/"), ("Analysis", "/analysis/"), ("Maps", "/maps/"),
          ("Data", "/data/"), ("Dispatches", "/dispatches/"), ("Podcast", "/podcast/"),
          ("По-русски", "/ru/"), ("Newsletters", "/newsletters/")]


def render_frontline_post(a: Article, site_arts: list[Article]) -> str:
    others = [x for x in site_arts if x.id != a.id]
    related = pick([x for x in others if x.section == a.section] or others, a.id + "rel", 3)
    trending = pick([x for x in others if x not in related], a.id + "tr", 4)
    nav = " ".join(f'<a class="fp-nav-link" href="{{{{BASE}}}}{p}">{E(t)}</a>' for t, p in FP_NAV)
    rel = "\n".join(
        f'        <div class="fp-card"><a href="{{{{BASE}}}}{x.path}"><h4>{h(x.title)}</h4></a><p>{h(x.dek)}</p></div>'
        for x in related)
    tr = "\n".join(f'        <li><a href="{{{{BASE}}}}{x.path}">{h(x.title)}</a></li>' for x in trending)
    date_meta = a.meta.get("date_meta")
    ld = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": a.title,
          "author": {"@type": "Person", "name": a.author},
          "publisher": {"@type": "Organization", "name": "The Frontline Post"},
          "mainEntityOfPage": a.canonical, "inLanguage": a.lang}
    if date_meta:
        ld["datePublished"] = iso(a)
    head_date = (f'<meta property="article:published_time" content="{iso(a)}">\n' if date_meta else "")
    visible_date = (f'<time datetime="{iso(a)}" class="fp-time">{a.published.strftime("%B %d, %Y")}</time>'
                    if date_meta else "")
    figure = (f'<figure class="fp-lead-media"><img src="{{{{BASE}}}}/static/photo.svg" alt="" loading="lazy">'
              f'<figcaption><span class="fp-caption">{h(a.caption)}</span></figcaption></figure>')
    pull = (f'<aside class="pull-quote">&ldquo;{h(a.pullquote)}&rdquo;</aside>' if a.meta.get("pullquote") else "")
    comments = "\n".join(
        f'      <div class="comment" id="c-{i}"><strong class="comment-author">{h(w)}</strong> '
        f'<span class="comment-date">{t}</span><p>{h(c)}</p><a href="#c-{i}" class="reply">Reply</a></div>'
        for i, (w, c, t) in enumerate(comments_for(a), 1))
    section_path = "/" + "/".join(a.path.split("/")[1:3]) + "/"
    return f"""<!doctype html>
<html lang="{a.lang}" class="no-js">
<head>
<meta charset="utf-8">
<title>{h(a.title)} | The Frontline Post</title>
<meta name="description" content="{h(a.dek)}">
<meta name="author" content="{h(a.author)}">
<meta property="og:title" content="{h(a.title)}">
<meta property="og:description" content="{h(a.dek)}">
<meta property="og:url" content="{a.url}">
<meta property="og:type" content="article">
<meta property="og:site_name" content="The Frontline Post">
<meta name="twitter:card" content="summary_large_image">
{head_date}<link rel="canonical" href="{a.canonical}">
<link rel="alternate" type="application/atom+xml" href="{{{{BASE}}}}/atom.xml" title="The Frontline Post">
<script type="application/ld+json">{json.dumps(ld, ensure_ascii=False)}</script>
<link rel="stylesheet" href="{{{{BASE}}}}/static/fp.css">
</head>
<body>
<div class="fp-consent" id="consent-layer"><div class="fp-consent-inner"><h2>We value your privacy</h2><p>We and our partners store and access information on your device to personalise content and measure audiences. You can change your choices at any time.</p><button>I agree</button><button>Manage options</button></div></div>
<div class="fp-topbar"><a href="{{{{BASE}}}}/login/">Sign in</a> | <a href="{{{{BASE}}}}/subscribe/">Subscribe from $1</a> | <a href="{{{{BASE}}}}/ru/">Русская версия</a></div>
<header class="fp-header"><a href="{{{{BASE}}}}/" class="fp-brand">The Frontline Post</a><div class="fp-slogan">Reporting from the world's conflict zones</div></header>
<nav class="fp-nav">{nav}</nav>
<div class="fp-wrap">
  <ol class="fp-breadcrumbs" itemscope itemtype="https://schema.org/BreadcrumbList"><li><a href="{{{{BASE}}}}/">Home</a></li><li><a href="{{{{BASE}}}}/world/">World</a></li><li><a href="{{{{BASE}}}}{section_path}">{h(a.section)}</a></li></ol>
  <div class="fp-grid">
    <main class="fp-content">
      <article class="fp-article">
        <span class="fp-kicker">{h(a.section)}</span>
        <h1 class="fp-headline">{h(a.title)}</h1>
        <h2 class="fp-dek">{h(a.dek)}</h2>
        <div class="fp-meta"><span class="fp-author">{h(a.author)}</span> {visible_date}</div>
        {figure}
        <div class="fp-article-body">
        {body_html(a, "", 0, pull)}
        </div>
        <p class="fp-correction-note">Have a correction or tip? Write to <a href="{{{{BASE}}}}/contact/">our newsroom</a>.</p>
      </article>
      <div class="fp-newsletter"><h3>Dispatches, weekly</h3><p>Our correspondents' best reporting from Ukraine, Sudan, Gaza and beyond, every Friday.</p><input type="email" placeholder="email@example.org"><button>Sign up</button></div>
      <section class="comments-area" id="comments">
      <h3>Reader comments ({len(comments_for(a))})</h3>
{comments}
      </section>
    </main>
    <aside class="fp-rail">
      <section class="fp-related"><h3>Related stories</h3>
{rel}
      </section>
      <section class="fp-trending"><h3>Trending</h3><ol>
{tr}
      </ol></section>
      <div class="fp-promo">Support independent war reporting. <a href="{{{{BASE}}}}/subscribe/">Become a member</a></div>
    </aside>
  </div>
</div>
<footer class="fp-footer">
  <div class="fp-footer-brand">The Frontline Post</div>
  <nav class="fp-footer-nav">
    <a href="{{{{BASE}}}}/about/">About</a> <a href="{{{{BASE}}}}/ethics/">Ethics policy</a> <a href="{{{{BASE}}}}/correspondents/">Our correspondents</a>
    <a href="{{{{BASE}}}}/contact/">Contact</a> <a href="{{{{BASE}}}}/securedrop/">Send us a tip securely</a> <a href="{{{{BASE}}}}/careers/">Careers</a>
    <a href="{{{{BASE}}}}/atom.xml">Atom feed</a> <a href="{{{{BASE}}}}/newsletters/">Newsletters</a> <a href="{{{{BASE}}}}/podcast/">Podcast</a>
    <a href="{{{{BASE}}}}/terms/">Terms</a> <a href="{{{{BASE}}}}/privacy/">Privacy</a> <a href="{{{{BASE}}}}/cookies/">Cookie policy</a> <a href="{{{{BASE}}}}/accessibility/">Accessibility</a>
  </nav>
  <small>&copy; 2024 The Frontline Post Ltd. Registered in an imaginary jurisdiction. All rights reserved.</small>
</footer>
</body>
</html>
"""


# --------------------------------------------------------------------------- steppe-herald

SH_NAV = [("Home", "/"), ("South", "/section/south/"), ("East", "/section/east/"),
          ("Odesa", "/section/odesa/"), ("Black Sea", "/section/black-sea/"),
          ("Economy", "/section/economy/"), ("World", "/section/world/"), ("Culture", "/section/culture/"),
          ("Opinion", "/section/opinion/"), ("Sport", "/section/sport/"), ("Weather", "/weather/"),
          ("Обстановка", "/ru/"), ("Archive", "/archive/")]


def render_steppe_herald(a: Article, site_arts: list[Article]) -> str:
    others = [x for x in site_arts if x.id != a.id]
    popular = pick(others, a.id + "pop", 5)
    more = pick([x for x in others if x not in popular], a.id + "more", 3)
    nav = "\n".join(f'      <a href="{{{{BASE}}}}{p}">{E(t)}</a>' for t, p in SH_NAV)
    pop = "\n".join(
        f'      <li><a href="{{{{BASE}}}}{x.path}">{h(x.title)}</a> <span class="sh-teaser">{h(x.dek)}</span></li>'
        for x in popular)
    mo = "\n".join(
        f'    <div class="sh-more-item"><a href="{{{{BASE}}}}{x.path}">{h(x.title)}</a><p>{h(x.dek)}</p></div>'
        for x in more)
    date_meta = a.meta.get("date_meta")
    head_date = ""
    if date_meta:
        head_date = (f'    <meta property="article:published_time" content="{iso(a)}">\n'
                     f'    <meta name="pubdate" content="{a.published.strftime("%Y-%m-%d")}">\n')
    visible = (f' &middot; <time datetime="{iso(a)}">{a.published.day} {a.published.strftime("%B %Y")}</time>'
               if date_meta else "")
    figure = (f'<figure class="sh-figure"><img src="{{{{BASE}}}}/static/photo.svg" alt="{h(a.caption)}">'
              f'<figcaption>{h(a.caption)}</figcaption></figure>')
    pull = (f'<blockquote class="sh-quote">{h(a.pullquote)}</blockquote>' if a.meta.get("pullquote") else "")
    comments = "\n".join(
        f'      <article class="comment"><header><b>{h(w)}</b> <span>{t}</span></header><p>{h(c)}</p></article>'
        for w, c, t in comments_for(a))
    year = "" if a.meta.get("date_none") else " 2024"
    return f"""<!DOCTYPE html>
<html lang="{a.lang}">
  <head>
    <meta http-equiv="Content-Type" content="text/html; charset=utf-8">
    <title>{h(a.title)} | Steppe Herald</title>
    <meta name="description" content="{h(a.dek)}">
    <meta property="og:title" content="{h(a.title)}">
    <meta property="og:url" content="{a.url}">
    <meta property="og:type" content="article">
    <meta property="og:locale" content="{ {'en': 'en_GB', 'ru': 'ru_RU', 'uk': 'uk_UA'}[a.lang] }">
{head_date}    <link rel="canonical" href="{a.canonical}">
    <link rel="alternate" type="application/rss+xml" title="Steppe Herald" href="{{{{BASE}}}}/feed.xml">
    <link rel="stylesheet" href="{{{{BASE}}}}/static/sh.css">
  </head>
  <body class="single-story">
    <div class="sh-cookies">This site uses cookies. By continuing to browse you agree to our use of cookies. <a href="{{{{BASE}}}}/cookies/">Learn more</a> <button>OK</button></div>
    <div class="sh-top"><span class="sh-weather">Odesa +24&deg;C</span> <a href="{{{{BASE}}}}/subscribe/">Subscribe</a> <a href="{{{{BASE}}}}/login/">Log in</a></div>
    <div class="sh-logo"><a href="{{{{BASE}}}}/">Steppe Herald</a><em>News from the south and east</em></div>
    <div class="sh-menu">
{nav}
    </div>
    <div class="sh-page">
      <div class="sh-crumbs"><a href="{{{{BASE}}}}/">Steppe Herald</a> / <a href="{{{{BASE}}}}/section/{slug(a.section)}/">{h(a.section)}</a> / <span>{h(a.title)}</span></div>
      <div class="sh-story">
        <h1>{h(a.title)}</h1>
        <div class="sh-lede">{h(a.dek)}</div>
        <div class="sh-credit"><span class="author vcard">{h(a.author)}</span>{visible}</div>
        <div class="story-text">
        {body_html(a, figure, 2, pull)}
        </div>
        <div class="sh-signup"><b>Herald Daily</b> &mdash; the south and east of Ukraine in five minutes. <input type="email" placeholder="Email address"><button>Join</button></div>
      </div>
      <div class="sh-comments" id="comments">
      <h3>Readers write</h3>
{comments}
      <p><a href="{{{{BASE}}}}/login/">Log in to comment</a></p>
      </div>
      <div class="sh-col">
      <h3>Popular now</h3>
      <ul class="sh-popular">
{pop}
      </ul>
      </div>
    <div class="sh-more"><h3>More from Steppe Herald</h3>
{mo}
    </div>
    </div>
    <div class="sh-foot">
      <div><a href="{{{{BASE}}}}/about/">About the Herald</a> &middot; <a href="{{{{BASE}}}}/editorial-policy/">Editorial policy</a> &middot; <a href="{{{{BASE}}}}/staff/">Staff</a> &middot; <a href="{{{{BASE}}}}/advertising/">Advertising</a> &middot; <a href="{{{{BASE}}}}/contact/">Contact</a></div>
      <div><a href="{{{{BASE}}}}/section/south/">South</a> &middot; <a href="{{{{BASE}}}}/section/east/">East</a> &middot; <a href="{{{{BASE}}}}/section/odesa/">Odesa</a> &middot; <a href="{{{{BASE}}}}/section/black-sea/">Black Sea</a> &middot; <a href="{{{{BASE}}}}/section/world/">World</a> &middot; <a href="{{{{BASE}}}}/feed.xml">RSS</a></div>
      <div><a href="{{{{BASE}}}}/privacy/">Privacy</a> &middot; <a href="{{{{BASE}}}}/terms/">Terms</a> &middot; <a href="{{{{BASE}}}}/cookies/">Cookies</a></div>
      <p>&copy;{year} Steppe Herald Media. Material may be quoted with attribution.</p>
    </div>
  </body>
</html>
"""


RENDER = {"kyiv-wire": render_kyiv_wire, "frontline-post": render_frontline_post,
          "steppe-herald": render_steppe_herald}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


# --------------------------------------------------------------------------- feeds

def content_html(a: Article) -> str:
    return "\n".join(f"<h2>{E(t)}</h2>" if k == "h" else f"<p>{E(t)}</p>" for k, t in a.blocks)


def rfc822(d: dt.datetime, gmt: bool) -> str:
    if gmt:
        d = d.astimezone(dt.timezone.utc)
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    tz = "GMT" if gmt else d.strftime("%z")
    return f"{days[d.weekday()]}, {d.day:02d} {months[d.month - 1]} {d.year} {d:%H:%M:%S} {tz}"


def guid_for(a: Article) -> str:
    site = SITES[a.site]
    num = 1040 + int(re.sub(r"\D", "", a.id))
    if a.site == "kyiv-wire":
        return f"kyiv-wire-{num}"
    if a.site == "frontline-post":
        return f"tag:frontline-post.example,{a.date}:/news/{a.path.rsplit('-', 1)[-1][:-5]}"
    return a.url  # steppe-herald: permalink guids


def feed_entries(arts: list[Article]) -> list[tuple[Article, str, str]]:
    """(article, guid, link) in feed order, newest first, incl. the tracking duplicate."""
    out = []
    for a in sorted(arts, key=lambda x: x.published, reverse=True):
        out.append((a, guid_for(a), a.url))
        if a.id == TRACKING_ARTICLE:
            out.append((a, guid_for(a) + "-social", a.url + "?" + TRACKING_QUERY))
    return out


def build_rss_kw(arts: list[Article]) -> str:
    items = []
    for a, guid, link in feed_entries(arts):
        enc = (f"\n      <content:encoded><![CDATA[{content_html(a)}]]></content:encoded>"
               if a.meta.get("content_encoded") else "")
        cats = "".join(f"\n      <category>{E(c)}</category>" for c in [a.section] + a.places[:2])
        items.append(f"""    <item>
      <title>{E(a.title)}</title>
      <link>{E(link)}</link>
      <guid isPermaLink="false">{guid}</guid>
      <pubDate>{rfc822(a.published, gmt=False)}</pubDate>
      <dc:creator>{E(a.author)}</dc:creator>{cats}
      <description>{E(a.dek)}</description>{enc}
    </item>""")
    newest = max(a.published for a in arts)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">
  <channel>
    <title>Kyiv Wire</title>
    <link>{{{{BASE}}}}/</link>
    <atom:link href="{{{{BASE}}}}/rss.xml" rel="self" type="application/rss+xml"/>
    <description>Independent news from Ukraine, around the clock</description>
    <language>en</language>
    <lastBuildDate>{rfc822(newest, gmt=False)}</lastBuildDate>
    <ttl>15</ttl>
{chr(10).join(items)}
  </channel>
</rss>
"""


def build_atom_fp(arts: list[Article]) -> str:
    entries = []
    for a, guid, link in feed_entries(arts):
        content = (f'\n    <content type="html">{E(content_html(a))}</content>'
                   if a.meta.get("content_encoded") else "")
        entries.append(f"""  <entry>
    <id>{guid}</id>
    <title type="text">{E(a.title)}</title>
    <link rel="alternate" type="text/html" href="{E(link)}"/>
    <published>{iso(a)}</published>
    <updated>{iso(a)}</updated>
    <author><name>{E(a.author)}</name></author>
    <category term="{E(a.section)}"/>
    <summary type="text">{E(a.dek)}</summary>{content}
  </entry>""")
    newest = max(a.published for a in arts)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <id>tag:frontline-post.example,2024:/atom</id>
  <title>The Frontline Post</title>
  <subtitle>Reporting from the world's conflict zones</subtitle>
  <link rel="self" type="application/atom+xml" href="{{{{BASE}}}}/atom.xml"/>
  <link rel="alternate" type="text/html" href="{{{{BASE}}}}/"/>
  <updated>{newest.isoformat()}</updated>
  <generator>fp-cms 4.2</generator>
{chr(10).join(entries)}
</feed>
"""


# The Steppe Herald CMS writes its feed by string concatenation: it leaks HTML entities
# (&nbsp;, &mdash;) that XML does not define, and one raw "&" in a title.  feedparser sets
# bozo=1 and falls back to its loose parser, which still returns every entry.
SH_FEED_TITLE_OVERRIDES = {"sh05": "Missile strike on Dnipro warehouse district kills two, injures 19 - photos & video"}
SH_FEED_DESC_SUFFIX = {"sh08": "&nbsp;Updated with drone footage.", "sh12": " &mdash; analysis"}


def build_rss_sh(arts: list[Article]) -> str:
    items = []
    for a, guid, link in feed_entries(arts):
        title = SH_FEED_TITLE_OVERRIDES.get(a.id, E(a.title))
        desc = E(a.dek) + SH_FEED_DESC_SUFFIX.get(a.id, "")
        enc = (f"\n  <content:encoded><![CDATA[{content_html(a)}]]></content:encoded>"
               if a.meta.get("content_encoded") else "")
        items.append(f"""<item>
  <title>{title}</title>
  <link>{link}</link>
  <guid isPermaLink="true">{guid}</guid>
  <pubDate>{rfc822(a.published, gmt=True)}</pubDate>
  <dc:creator>{E(a.author)}</dc:creator>
  <category>{E(a.section)}</category>
  <description>{desc}</description>{enc}
</item>""")
    newest = max(a.published for a in arts)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
<title>Steppe Herald</title>
<link>{{{{BASE}}}}/</link>
<description>News from the south&nbsp;and east of Ukraine</description>
<language>en-gb</language>
<pubDate>{rfc822(newest, gmt=True)}</pubDate>
<generator>HeraldPress 2.1</generator>
{chr(10).join(items)}
</channel>
</rss>
"""


FEEDS = {"kyiv-wire": build_rss_kw, "frontline-post": build_atom_fp, "steppe-herald": build_rss_sh}


# --------------------------------------------------------------------------- static files

PHOTO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="960" height="540" viewBox="0 0 960 540">
<rect width="960" height="540" fill="#8a8f94"/><text x="480" y="280" font-size="36" text-anchor="middle" fill="#eee">photo</text></svg>
"""
CSS = {
    "kyiv-wire": "body{font-family:Georgia,serif;max-width:1200px;margin:auto}.kw-sidebar{float:right;width:300px}.cookie-banner{position:fixed;bottom:0}\n",
    "frontline-post": "body{font-family:Helvetica,Arial,sans-serif}.fp-grid{display:grid;grid-template-columns:2fr 1fr}.fp-consent{position:fixed;inset:0}\n",
    "steppe-herald": "body{font:16px/1.5 'Times New Roman',serif;background:#fbf8f0}.sh-col{float:right;width:30%}\n",
}


def index_html(site: Site, arts: list[Article]) -> str:
    rows = "\n".join(f'    <li><a href="{{{{BASE}}}}{a.path}">{h(a.title)}</a> <p>{h(a.dek)}</p></li>'
                     for a in sorted(arts, key=lambda x: x.published, reverse=True))
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{h(site.name)} | {h(site.tagline)}</title>
<link rel="alternate" href="{{{{BASE}}}}/{site.feed_file}" type="{'application/atom+xml' if site.feed_format == 'atom' else 'application/rss+xml'}" title="{h(site.name)}"></head>
<body>
  <h1>{h(site.name)}</h1>
  <p>{h(site.tagline)}</p>
  <ul class="latest">
{rows}
  </ul>
</body>
</html>
"""


# --------------------------------------------------------------------------- manifest

def y(v) -> str:
    """YAML scalar / flow value (JSON is valid YAML 1.2 flow syntax)."""
    return json.dumps(v, ensure_ascii=False)


def shingle_jaccard(a: Article, b: Article, k: int = 5) -> float:
    def shingles(x: Article) -> set:
        w = re.findall(r"\w+", x.text.replace("\u2019", "'").lower())
        return {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def build_manifest(arts: dict[str, Article], feeds: dict[str, list]) -> str:
    L = ["# Machine-readable truth for the offline demo corpus. Generated by build_corpus.py; do not edit.",
         "# URLs use {{BASE}} (the serving site's base URL) or {{BASE:<site>}} (another demo site's base URL).",
         "version: 1",
         "placeholders:",
         f"  own_site: {y('{{BASE}}')}",
         f"  other_site: {y('{{BASE:<site folder>}}')}",
         "path_mapping: \"URL path -> sites/<site>/<path> (query string ignored; '/' -> index.html)\"",
         "sites:"]
    for key, s in SITES.items():
        entries = feeds[key]
        L += [f"  - name: {y(s.name)}",
              f"    id: {y(key)}",
              f"    folder: {y('sites/' + key)}",
              f"    feed: {y(s.feed_file)}",
              f"    feed_url: {y('{{BASE}}/' + s.feed_file)}",
              f"    feed_format: {y({'rss2': 'rss2', 'atom': 'atom', 'rss2-broken': 'rss2'}[s.feed_format])}",
              f"    feed_well_formed: {y(s.feed_format != 'rss2-broken')}",
              f"    feed_entries: {len(entries)}",
              f"    articles: {sum(1 for a in arts.values() if a.site == key)}"]
    L.append("articles:")
    for a in sorted(arts.values(), key=lambda x: (list(SITES).index(x.site), x.published)):
        where = []
        if a.meta.get("date_meta"):
            where.append("meta")
        if re.match(r"^/\d{4}/\d{2}/\d{2}/", a.path):
            where.append("url")
        where.append("feed")
        guids = [g for (x, g, _) in feeds[a.site] if x is a]
        L += [f"  - id: {y(a.id)}",
              f"    site: {y(a.site)}",
              f"    path: {y(a.path)}",
              f"    url: {y(a.url)}",
              f"    canonical_url: {y(a.canonical)}",
              f"    title: {y(a.title)}",
              f"    author: {y(a.author)}",
              f"    published: {y(a.date)}",
              f"    published_at: {y(iso(a))}",
              f"    published_where: {y(where)}",
              f"    language: {y(a.lang)}",
              f"    word_count: {a.words}",
              f"    syndication_group: {y(a.meta.get('syndication'))}",
              f"    syndicated_from: {y(a.meta.get('copy_of'))}",
              f"    same_topic_group: {y(a.meta.get('same_topic'))}",
              f"    feed_guids: {y(guids)}",
              f"    places: {y(a.places)}",
              f"    actors: {y(a.actors)}",
              f"    event_types: {y(a.events)}",
              f"    first_words: {y(' '.join(a.paragraphs[0].split()[:12]))}",
              f"    last_paragraph_start: {y(' '.join(a.paragraphs[-1].split()[:12]))}"]
    L.append("syndication_groups:")
    for g in sorted({a.meta.get("syndication") for a in arts.values()} - {None}):
        members = [a for a in arts.values() if a.meta.get("syndication") == g]
        orig = [a for a in members if not a.meta.get("copy_of")][0]
        copies = [a for a in members if a.meta.get("copy_of")]
        L += [f"  {g}:", f"    original: {y(orig.id)}",
              f"    copies: {y([a.id for a in copies])}",
              "    # Jaccard of lower-cased 5-word shingles of the article bodies, copy vs. original",
              f"    body_similarity: {y({a.id: round(shingle_jaccard(orig, a), 2) for a in copies})}"]
    L.append("same_topic_groups:")
    for g, info in SAME_TOPIC.items():
        members = [a.id for a in arts.values() if a.meta.get("same_topic") == g]
        L += [f"  {g}:", f"    place: {y(info['place'])}", f"    date: {y(info['date'])}",
              f"    articles: {y(members)}", f"    note: {y(info['note'])}"]
    t = arts[TRACKING_ARTICLE]
    tr = [(g, link) for (x, g, link) in feeds[t.site] if x is t and "?" in link][0]
    L += ["tracking_variants:",
          f"  - article: {y(t.id)}",
          f"    site: {y(t.site)}",
          f"    clean_url: {y(t.url)}",
          f"    tracking_url: {y(tr[1])}",
          f"    tracking_guid: {y(tr[0])}",
          f"    tracking_params: {y(['utm_source', 'utm_medium', 'fbclid'])}"]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main

def main(argv: list[str]) -> int:
    arts = load_articles()
    errors = validate(arts)
    for e in errors:
        print("ERROR", e, file=sys.stderr)
    if errors:
        return 1
    if "--check" in argv:
        print(f"{len(arts)} articles OK")
        return 0
    if SITES_DIR.exists():
        shutil.rmtree(SITES_DIR)
    feeds = {}
    for key, site in SITES.items():
        root = SITES_DIR / key
        site_arts = [a for a in arts.values() if a.site == key]
        for a in site_arts:
            out = root / a.path.lstrip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(RENDER[key](a, site_arts), encoding="utf-8")
        (root / site.feed_file).write_text(FEEDS[key](site_arts), encoding="utf-8")
        feeds[key] = feed_entries(site_arts)
        (root / "index.html").write_text(index_html(site, site_arts), encoding="utf-8")
        (root / "robots.txt").write_text(
            f"User-agent: *\nDisallow: /login/\nDisallow: /share/\n\nSitemap: {{{{BASE}}}}/{site.feed_file}\n",
            encoding="utf-8")
        (root / "static").mkdir(exist_ok=True)
        (root / "static" / "photo.svg").write_text(PHOTO_SVG, encoding="utf-8")
        (root / "static" / f"{ {'kyiv-wire': 'kw', 'frontline-post': 'fp', 'steppe-herald': 'sh'}[key] }.css"
         ).write_text(CSS[key], encoding="utf-8")
    MANIFEST.write_text(build_manifest(arts, feeds), encoding="utf-8")
    per_site = {k: sum(1 for a in arts.values() if a.site == k) for k in SITES}
    print(f"built {len(arts)} pages: {per_site}; manifest -> {MANIFEST.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
