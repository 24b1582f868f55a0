"""Enrichment: its per-report cost beside trafilatura's per-page cost, and its quality on labelled sets.

Cost: every demo page (seeds/demo/sites) is extracted with the pipeline's extract_page (trafilatura), then
its text is enriched (relevance, event types, places, actors); both are timed per page in the same run, so
the ratio is what enrichment adds to the CPU-bound part of build_report. The one-off cost of loading the
gazetteer in a fresh process (what each worker pays once) is printed beside it.

Quality, on two labelled sets:
- the demo corpus (seeds/demo/MANIFEST.yaml: places, actors and event types per article; the demo's
  event vocabulary is mapped onto the taxonomy by ``_DEMO_EVENTS``);
- bench/enrich_labelled/snippets.yaml: short wire-style snippets from many regions, in English, Ukrainian
  and Russian, with conflict / not-conflict labels (the relevance threshold is judged on them).

A predicted place counts as right when its name, or a surface form it was matched by, equals a gold name
once lower-cased, folded to ASCII and stripped of "region"/"oblast"/"province"/"state"; actors likewise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from bench import step
from sitrep.enrich import enrich
from sitrep.extract import extract_page
from sitrep.settings import DEFAULT_RELEVANCE_THRESHOLD

TITLE = "Enrichment: cost per report beside trafilatura, and places/actors/event types on labelled sets"
ORDER = 35

_ROOT = Path(__file__).resolve().parents[1]
_DEMO = _ROOT / "seeds" / "demo"
_SNIPPETS = Path(__file__).resolve().parent / "enrich_labelled" / "snippets.yaml"
_STRIP = re.compile(r"\b(the|region|oblast|province|state|governorate|district)\b")
#: The demo's free-text event labels -> the taxonomy, parents included as enrich reports them (labels
#: without an equivalent are not scored).
_DEMO_EVENTS: dict[str, tuple[str, ...]] = {
    "airstrike": ("air_drone_strike", "explosion_remote_violence"),
    "drone strike": ("air_drone_strike", "explosion_remote_violence"),
    "naval drone attack": ("air_drone_strike", "explosion_remote_violence"),
    "missile strike": ("explosion_remote_violence",), "shelling": ("explosion_remote_violence",),
    "clashes": ("battle",), "ambush": ("battle",), "siege": ("battle",), "territory changes": ("territory_change",),
    "troop movements": ("troop_movement", "strategic_development"), "protests": ("protest",),
    "prisoner exchange": ("agreement", "strategic_development"), "ceasefire talks": ("strategic_development",),
    "negotiations": ("strategic_development",),
}
_SCORED = {t for types in _DEMO_EVENTS.values() for t in types}  # "civilian casualties" is not mapped: ACLED codes shelling that kills civilians as remote violence


def _norm(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().replace("'s", "")
    return " ".join(_STRIP.sub(" ", folded).replace("-", " ").split())


@dataclass
class _PR:
    tp: int = 0
    predicted: int = 0
    gold: int = 0
    found: int = 0

    def add(self, predicted: Iterable[set[str]], gold: Iterable[str]) -> None:
        preds, golds = list(predicted), {_norm(g) for g in gold}
        self.predicted += len(preds)
        self.tp += sum(1 for forms in preds if forms & golds)
        self.gold += len(golds)
        self.found += sum(1 for g in golds if any(g in forms for forms in preds))

    def row(self) -> tuple[str, str, str]:
        p = self.tp / self.predicted if self.predicted else 0.0
        r = self.found / self.gold if self.gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return f"{p:.2f}", f"{r:.2f}", f"{f:.2f}"


def _place_forms(result: Any) -> list[set[str]]:
    forms = []
    for place in result.places:
        surfaces = result.evidence["places"].get(place["name"], {}).get("surfaces", [])
        forms.append({_norm(place["name"]), *(_norm(s) for s in surfaces)})
    return forms


def _demo_pages() -> list[tuple[dict[str, Any], bytes, str]]:
    manifest = yaml.safe_load((_DEMO / "MANIFEST.yaml").read_text(encoding="utf-8"))
    pages = []
    for article in manifest["articles"]:
        path = _DEMO / "sites" / article["site"] / article["path"].lstrip("/")
        body = path.read_bytes().replace(b"{{BASE}}", b"http://127.0.0.1:8000")
        body = re.sub(rb"\{\{BASE:[^}]+\}\}", b"http://127.0.0.1:8001", body)
        pages.append((article, body, "http://127.0.0.1:8000" + article["path"]))
    return pages


def _cold_start() -> float:
    """Seconds for a fresh process to import enrich and enrich one report (what a worker pays once)."""
    code = ("import time; t = time.monotonic(); from sitrep.enrich import enrich; enrich('Russian forces shelled Kharkiv.');"
            " print(time.monotonic() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def run(args: Any) -> list[Table]:
    rounds = 5 if getattr(args, "full", False) else 2
    enrich("warm-up: Russian forces shelled Kharkiv.")  # the gazetteer loads once per process
    pages = _demo_pages()
    extract_s = enrich_s = 0.0
    texts = []
    for i in range(rounds):
        step(f"extracting and enriching {len(pages)} demo pages, round {i + 1} of {rounds}")
        texts = []
        for article, body, url in pages:
            t0 = time.perf_counter()
            extracted = extract_page(body, url)
            t1 = time.perf_counter()
            result = enrich(extracted.text, extracted.title)
            t2 = time.perf_counter()
            extract_s += t1 - t0
            enrich_s += t2 - t1
            texts.append((article, extracted, result))
    n = len(pages) * rounds
    words = sum(len(e.text.split()) for _, e, _ in texts) / len(texts)
    cost = Table(title=f"Per report, demo pages ({len(pages)} pages x {rounds} rounds, ~{words:.0f} words each)")
    for column in ("step", "ms / report", "reports / s / core", "vs trafilatura"):
        cost.add_column(column, justify="right" if column != "step" else "left")
    cost.add_row("trafilatura extract_page (baseline)", f"{1000 * extract_s / n:.2f}", f"{n / extract_s:.0f}", "1.00x")
    cost.add_row("enrich (relevance, types, places, actors)", f"{1000 * enrich_s / n:.2f}", f"{n / enrich_s:.0f}",
                 f"{enrich_s / extract_s:.2f}x")
    cost.add_row("gazetteer + lexicons, once per process (cold)", f"{1000 * _cold_start():.0f}", "-", "-")

    places, actors, events = _PR(), _PR(), _PR()
    for article, _, result in texts:
        places.add(_place_forms(result), article.get("places") or [])
        actors.add([{_norm(a["name"])} for a in result.actors], article.get("actors") or [])
        gold_events = {t for e in article.get("event_types") or [] for t in _DEMO_EVENTS.get(e, ())}
        events.add([{t} for t in result.event_types if t in _SCORED], gold_events)

    snippets = yaml.safe_load(_SNIPPETS.read_text(encoding="utf-8"))["snippets"]
    s_places, s_actors, s_events = _PR(), _PR(), _PR()
    tp = fp = fn = tn = 0
    for snippet in snippets:
        result = enrich(snippet["text"])
        s_places.add(_place_forms(result), snippet.get("places") or [])
        s_actors.add([{_norm(a["name"])} for a in result.actors], snippet.get("actors") or [])
        s_events.add([{t} for t in result.event_types], snippet.get("event_types") or [])
        hit = result.relevance >= DEFAULT_RELEVANCE_THRESHOLD
        tp += hit and snippet["conflict"]
        fp += hit and not snippet["conflict"]
        fn += (not hit) and snippet["conflict"]
        tn += (not hit) and not snippet["conflict"]

    quality = Table(title="Quality (precision / recall / F1; one row per labelled set and field)")
    for column in ("set", "field", "precision", "recall", "F1", "gold items"):
        quality.add_column(column, justify="left" if column in ("set", "field") else "right")
    demo = f"demo corpus ({len(pages)} articles)"
    quality.add_row(demo, "places", *places.row(), str(places.gold))
    quality.add_row(demo, "actors", *actors.row(), str(actors.gold))
    quality.add_row(demo, "event types (mapped)", *events.row(), str(events.gold))
    own = f"wire snippets ({len(snippets)}, en/uk/ru)"
    quality.add_row(own, "places", *s_places.row(), str(s_places.gold))
    quality.add_row(own, "actors", *s_actors.row(), str(s_actors.gold))
    quality.add_row(own, "event types", *s_events.row(), str(s_events.gold))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    quality.add_row(own, f"conflict at relevance >= {DEFAULT_RELEVANCE_THRESHOLD}", f"{precision:.2f}",
                    f"{recall:.2f}", f"{f1:.2f}", f"{tp + fn} of {len(snippets)}")
    return [cost, quality]
