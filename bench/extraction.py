"""Extraction: sitrep's stored text vs bare ``trafilatura.extract`` on the labelled set (bench/labelled).

Quality is the common shingle-based precision/recall/F1 (bench/_labelled.py), macro-averaged over pages.
Speed is pages per CPU-second of this process (``time.process_time``), best of several interleaved
rounds; the ratio to bare trafilatura is the median of the per-round ratios, so that other work on
the machine does not bend it. sitrep's path is the whole of
extraction and normalization (``extract_page`` + ``to_report``: metadata, dates, language, hashes);
the rows below it try each trafilatura switch on that same path, which is how the defaults in
``ExtractSettings`` were chosen.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import trafilatura
from rich.table import Table

from bench import step
from bench._labelled import LabelledPage, load_set, mean, score
from sitrep.extract import extract_page
from sitrep.normalize import to_report
from sitrep.records import PageJob
from sitrep.settings import ExtractSettings

TITLE = "Extraction: stored text F1 and pages/s vs bare trafilatura.extract (labelled set)"
ORDER = 30


def _sitrep(options: ExtractSettings) -> Callable[[LabelledPage], str | None]:
    fetched = datetime.now(UTC)

    def run(page: LabelledPage) -> str | None:
        job = PageJob(entry_id=0, source_id=0, url=page.url, final_url=page.url, body=page.html, fetched_at=fetched)
        return to_report(job, extract_page(page.html, page.url, options=options)).text

    return run


def _bare(page: LabelledPage) -> str | None:
    return trafilatura.extract(page.html, url=page.url)


def _measure(runners: dict[str, Callable[[LabelledPage], str | None]], pages: list[LabelledPage], rounds: int,
             baseline: str) -> tuple[dict[str, list[str | None]], dict[str, float], dict[str, float]]:
    """Outputs of each runner, its best pages per CPU-second, and its median speed ratio to the baseline.

    Each round times every runner back to back, and the ratio is taken within the round: a slow spell
    of the machine (other jobs on the same cores) then slows both sides of a ratio alike.
    """
    outputs = {name: [run(p) for p in pages] for name, run in runners.items()}  # warm-up (langid model, caches)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(rounds):
        step(f"{len(runners)} extractions of {len(pages)} labelled pages, round {i + 1} of {rounds}")
        for name, run in runners.items():
            started = time.process_time()
            for page in pages:
                run(page)
            times[name].append(max(time.process_time() - started, 1e-9))
    speed = {name: len(pages) / min(ts) for name, ts in times.items()}
    ratio = {name: statistics.median(b / t for b, t in zip(times[baseline], ts, strict=True)) for name, ts in times.items()}
    return outputs, speed, ratio


def run(args: argparse.Namespace) -> list[Table]:
    pages = load_set()
    defaults = ExtractSettings()
    balanced = ExtractSettings(fast=False, favor_precision=False, favor_recall=False, include_comments=False)
    variants = {
        "balanced (no switch)": balanced,
        "fast": replace(balanced, fast=True),
        "favor_precision": replace(balanced, favor_precision=True),
        "favor_recall": replace(balanced, favor_recall=True),
        "fast + favor_recall": replace(balanced, fast=True, favor_recall=True),
        "balanced + include_comments": replace(balanced, include_comments=True),
        "favor_recall, no tables": replace(balanced, favor_recall=True, include_tables=False),
    }
    runners: dict[str, Callable[[LabelledPage], str | None]] = {
        "bare trafilatura.extract (defaults)": _bare,
        "sitrep stored text (defaults)": _sitrep(defaults),
    }
    runners |= {f"sitrep, {name}": _sitrep(opts) for name, opts in variants.items() if opts != defaults}
    baseline = "bare trafilatura.extract (defaults)"
    outputs, speed, ratio = _measure(runners, pages, 11 if getattr(args, "full", False) else 5, baseline)

    table = Table(title=f"{len(pages)} labelled pages; defaults: {_describe(defaults)}")
    for column in ("extraction", "precision", "recall", "F1", "F1 - bare", "pages/s (CPU)", "x bare (median)"):
        table.add_column(column, justify="left" if column == "extraction" else "right")
    base_f1 = mean([score(o, p.truth) for o, p in zip(outputs[baseline], pages, strict=True)])[2]
    for name in runners:
        precision, recall, f1 = mean([score(o, p.truth) for o, p in zip(outputs[name], pages, strict=True)])
        table.add_row(name, f"{precision:.3f}", f"{recall:.3f}", f"{f1:.3f}", f"{f1 - base_f1:+.3f}",
                      f"{speed[name]:.0f}", f"{ratio[name]:.2f}")

    layouts = Table(title="F1 by page layout (mean over the layout's pages)")
    for column in ("layout", "pages", "bare", "sitrep"):
        layouts.add_column(column, justify="left" if column == "layout" else "right")
    by_layout: dict[str, list[int]] = defaultdict(list)
    for i, page in enumerate(pages):
        by_layout[_layout(page.name)].append(i)
    for layout, idx in sorted(by_layout.items()):
        f1 = {name: sum(score(outputs[name][i], pages[i].truth).f1 for i in idx) / len(idx)
              for name in (baseline, "sitrep stored text (defaults)")}
        layouts.add_row(layout, str(len(idx)), f"{f1[baseline]:.3f}", f"{f1['sitrep stored text (defaults)']:.3f}")
    return [table, layouts]


def _layout(name: str) -> str:
    """'12-captions-kw09' -> 'captions'; '04-news-sidebar-comments-uk-kw07' -> 'news-sidebar-comments'."""
    parts = name.split("-")[1:-1]
    if parts and parts[-1] in {"uk", "ru"}:
        parts = parts[:-1]
    if parts and parts[-1].isdigit():
        parts = parts[:-1]
    return "-".join(parts)


def _describe(options: ExtractSettings) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(options).items())
