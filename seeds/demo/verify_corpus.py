#!/usr/bin/env python3
"""Check the demo corpus with feedparser and trafilatura (not standard library: run it with a
venv that has them, e.g. /tmp/probe-venv/bin/python seeds/demo/verify_corpus.py).

Substitutes {{BASE}} with http://127.0.0.1:<port> per site (kyiv-wire 8000, frontline-post 8001,
steppe-herald 8002), then: every feed parses and yields every entry listed in MANIFEST.yaml; every
page extracts to the article body (first and last paragraph present, no chrome), >= 300 words for
English pages; trafilatura's date agrees with the manifest.
"""
import re
import sys
from pathlib import Path

import feedparser
import trafilatura
import yaml

HERE = Path(__file__).resolve().parent
PORTS = {"kyiv-wire": 8000, "frontline-post": 8001, "steppe-herald": 8002}
CHROME = ["Most read", "Related stories", "Popular now", "Subscribe", "cookies", "Sign up",
          "All rights reserved", "Reader comments", "Readers write", "Log in to comment",
          "Advertisement", "Share:", "Morning Wire", "Herald Daily", "Dispatches, weekly"]


def base(site):
    return f"http://127.0.0.1:{PORTS[site]}"


def serve(text, site):
    text = re.sub(r"\{\{BASE:([a-z-]+)\}\}", lambda m: base(m.group(1)), text)
    return text.replace("{{BASE}}", base(site))


def norm(s):
    return " ".join(s.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"').split())


def main():
    man = yaml.safe_load((HERE / "MANIFEST.yaml").read_text(encoding="utf-8"))
    arts = man["articles"]
    problems = []
    for s in man["sites"]:
        raw = (HERE / s["folder"] / s["feed"]).read_text(encoding="utf-8")
        d = feedparser.parse(serve(raw, s["id"]).encode("utf-8"))
        links = {e.link for e in d.entries}
        want = {serve(a["url"], s["id"]) for a in arts if a["site"] == s["id"]}
        missing = want - links
        ok = len(d.entries) == s["feed_entries"] and not missing and all(e.get("title") and e.get("id") for e in d.entries)
        if bool(d.bozo) == s["feed_well_formed"]:
            problems.append(f"{s['feed']}: bozo={d.bozo} but feed_well_formed={s['feed_well_formed']}")
        if not ok:
            problems.append(f"{s['feed']}: {len(d.entries)} entries, missing {missing}")
        print(f"feed {s['id']:15} {s['feed']:9} version={d.version:6} bozo={int(d.bozo)} entries={len(d.entries)}"
              f" (manifest {s['feed_entries']}) {'OK' if ok else 'FAIL'}"
              + (f"  [{type(d.bozo_exception).__name__}: {d.bozo_exception}]" if d.bozo else ""))
    print()
    words_en, dates_ok = [], 0
    for a in arts:
        html = serve((HERE / "sites" / a["site"] / a["path"].lstrip("/")).read_text(encoding="utf-8"), a["site"])
        url = serve(a["url"], a["site"])
        text = trafilatura.extract(html, url=url, include_comments=False) or ""
        meta = trafilatura.extract_metadata(html, default_url=url)
        n = len(text.split())
        t = norm(text)
        errs = []
        if a["language"] == "en":
            words_en.append(n)
            if n < 300:
                errs.append(f"only {n} words")
        if norm(a["first_words"]) not in t:
            errs.append("first paragraph missing")
        if norm(a["last_paragraph_start"]) not in t:
            errs.append("last paragraph missing")
        leaked = [c for c in CHROME if c in text]
        if leaked:
            errs.append(f"chrome leaked: {leaked}")
        got_date = meta.date if meta else None
        want_date = None if a["published_where"] == ["feed"] else a["published"]
        if got_date == want_date:
            dates_ok += 1
        else:
            errs.append(f"date {got_date!r}, manifest says {want_date!r} ({a['published_where']})")
        if errs:
            problems.append(f"{a['id']}: " + "; ".join(errs))
        print(f"{a['id']:5} {a['language']} {n:4} words  date={got_date or '-':10}  {'OK' if not errs else 'FAIL ' + '; '.join(errs)}")
    print()
    print(f"{len(man['sites'])} sites, {len(arts)} pages; English pages extract {min(words_en)}-{max(words_en)} words;"
          f" dates agree on {dates_ok}/{len(arts)}; {len(problems)} problem(s)")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
