"""Conflict enrichment of a report: relevance, event types, places and actors, each with its evidence.

    from sitrep.enrich import enrich
    result = enrich(text, title="...")
    result.relevance, result.event_types, result.places, result.actors, result.evidence

Everything is decided by lexicons that users edit without code changes, in ``seeds/lexicons/``
(``SITREP_LEXICON_DIR`` to use another folder): ``relevance.yaml`` (weighted terms, context rules,
off-topic terms), ``event_types.yaml`` (the ACLED-like taxonomy), ``actors.yaml`` (actors and aliases)
and ``places.yaml`` (see :mod:`sitrep.gazetteer`). Each lexicon file's comments document its rules.

Speed: the lexicon terms are compiled into one Aho-Corasick automaton and the place names into another
(:mod:`sitrep.gazetteer`), both built once per process on first use (module-level caches; build_report
runs in worker processes); a report costs two passes over its text, whatever the number of names.

Nothing here drops a report: the relevance is recorded, and the alerting and export DAGs compare it with
``SITREP_RELEVANCE_THRESHOLD``.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import ahocorasick

from sitrep.errors import ConfigError
from sitrep.gazetteer import gazetteer, lower_same_length, resolved
from sitrep.yamlfile import read_yaml

__all__ = ["Enrichment", "EVENT_TYPES", "enrich", "enrich_report", "lexicon_dir"]

_ROOT = Path(__file__).resolve().parents[2]
_WORD = re.compile(r"\w+")

#: The taxonomy's ids (the contract of reports_v1.event_types); labels and terms live in event_types.yaml.
EVENT_TYPES = ("battle", "explosion_remote_violence", "air_drone_strike", "violence_against_civilians", "protest",
               "riot", "strategic_development", "troop_movement", "agreement", "territory_change")


def lexicon_dir() -> Path:
    return Path(os.environ.get("SITREP_LEXICON_DIR") or _ROOT / "seeds" / "lexicons")


@dataclass(frozen=True)
class _Term:
    """One lexicon term: which group it feeds, with what weight, and how it must sit in the text."""

    text: str  # as written in the lexicon
    group: str  # "rel:<group>", "off:<group>", "event:<type>", "actor:<index>"
    weight: float
    prefix: bool  # ends with '*': any word ending may follow
    rest: re.Pattern[str] | None  # for phrases with an inner '*': the part after the first stem
    case_sensitive: bool
    ambiguous: bool = False
    not_near: tuple[str, ...] = ()


@dataclass
class _Lexicons:
    automaton: Any
    entries: list[tuple[_Term, ...]]
    keylen: list[int]
    scale: float
    max_count: int
    window: int
    types: dict[str, dict[str, Any]]
    actors: list[dict[str, Any]]


@dataclass
class Enrichment:
    relevance: float
    event_types: list[str]
    places: list[dict[str, Any]]
    actors: list[dict[str, Any]]
    evidence: dict[str, Any] = field(default_factory=dict)


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, what="the lexicon", fix="restore it from seeds/lexicons in git")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top; see the comments in seeds/lexicons/{path.name}")
    return data


def _compile_term(raw: Any, group: str, weight: float, *, ambiguous: bool = False,
                  not_near: tuple[str, ...] = (), where: str) -> tuple[str, _Term]:
    text = str(raw).strip()
    if not text or text == "*":
        raise ConfigError(f"{where}: empty term; remove it")
    letters = [c for c in text if c.isalpha()]
    case_sensitive = len(letters) >= 2 and all(c.isupper() for c in letters)
    head, star, tail = text.partition("*")
    rest = None
    if star and tail.strip():
        # "мирн* жител*": the first stem goes in the automaton, the rest is checked where it matched.
        parts = [re.escape(p.strip()) for p in tail.split("*")]
        rest = re.compile(r"\w*\s+" + r"\w*".join(parts[:-1] + [parts[-1]]) + (r"\w*" if text.endswith("*") else r"\b"))
    key = head if case_sensitive else lower_same_length(head)
    return key.lower(), _Term(text, group, weight, bool(star) and rest is None, rest, case_sensitive, ambiguous, not_near)


@lru_cache(maxsize=4)
def _lexicons(folder: Path) -> _Lexicons:
    relevance = _read_yaml(folder / "relevance.yaml")
    events = _read_yaml(folder / "event_types.yaml")
    actors_doc = _read_yaml(folder / "actors.yaml")
    terms: dict[str, list[_Term]] = defaultdict(list)

    def add(raw: Any, group: str, weight: float, where: str, **kw: Any) -> None:
        key, term = _compile_term(raw, group, weight, where=where, **kw)
        terms[key].append(term)

    try:
        for g in relevance.get("groups") or []:
            for raw in g["terms"]:
                add(raw, f"rel:{g['name']}", float(g["weight"]), f"relevance.yaml group {g['name']!r}",
                    ambiguous=bool(g.get("ambiguous")), not_near=tuple(str(w).lower() for w in g.get("not_near") or ()))
        for g in relevance.get("off_topic") or []:
            for raw in g["terms"]:
                add(raw, f"off:{g['name']}", float(g["weight"]), f"relevance.yaml off_topic {g['name']!r}")
        types = events.get("types") or {}
        for type_id, spec in types.items():
            if type_id not in EVENT_TYPES:
                raise ConfigError(f"{folder / 'event_types.yaml'}: unknown type {type_id!r}; the taxonomy is fixed: "
                                  f"{', '.join(EVENT_TYPES)}")
            near = tuple(str(w).lower() for w in spec.get("not_near") or ())
            for weight, raws in (spec.get("terms") or {}).items():
                for raw in raws:
                    add(raw, f"event:{type_id}", float(weight), f"event_types.yaml {type_id}", not_near=near)
        actors = list(actors_doc.get("actors") or [])
        for index, actor in enumerate(actors):
            for raw in [actor["name"], *(actor.get("aliases") or [])]:
                add(raw, f"actor:{index}", 1.0, f"actors.yaml {actor['name']!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{folder}: a lexicon entry lacks a field or has the wrong type ({exc!r}); "
                          "compare it with the entries around it") from None
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    entries: list[tuple[_Term, ...]] = []
    keylen: list[int] = []
    for key, group_terms in terms.items():
        automaton.add_word(key, len(entries))
        entries.append(tuple(group_terms))
        keylen.append(len(key))
    automaton.make_automaton()
    return _Lexicons(automaton, entries, keylen, float(relevance.get("scale", 4.0)),
                     int(relevance.get("max_count", 3)), int(relevance.get("window", 40)), types, actors)


@dataclass
class _Hit:
    term: _Term
    start: int
    end: int


def _scan(lex: _Lexicons, text: str, low: str) -> list[_Hit]:
    """Every lexicon term in the text, on word boundaries, with the context rules applied."""
    hits: list[_Hit] = []
    n = len(text)
    for last, index in lex.automaton.iter(low):
        start, end = last - lex.keylen[index] + 1, last + 1
        if start > 0 and low[start - 1].isalnum():
            continue
        for term in lex.entries[index]:
            stop = end
            if term.rest is not None:
                m = term.rest.match(low, end)
                if not m:
                    continue
                stop = m.end()
            elif term.prefix:
                while stop < n and low[stop].isalnum():
                    stop += 1
            elif stop < n and low[stop].isalnum():
                continue
            if term.case_sensitive and text[start:end].upper() != text[start:end]:
                continue
            if term.not_near and _near(low, start, stop, term.not_near, lex.window):
                continue
            hits.append(_Hit(term, start, stop))
    return hits


def _near(low: str, start: int, end: int, words: tuple[str, ...], window: int) -> bool:
    around = f" {' '.join(_WORD.findall(low[max(0, start - window):start]))} | " \
             f"{' '.join(_WORD.findall(low[end:end + window]))} "
    for word in words:
        if word.endswith("*"):
            if f" {word[:-1]}" in around:
                return True
        elif f" {word} " in around:
            return True
    return False


def _drop_overlapped(hits: list[_Hit], group_prefix: str) -> list[_Hit]:
    """Within one kind of group, a term inside a longer matched term does not count twice."""
    chosen = sorted((h for h in hits if h.term.group.startswith(group_prefix)), key=lambda h: (h.start, -(h.end - h.start)))
    out: list[_Hit] = []
    # One sweep: a hit kept earlier starts at or before this one, so this one lies inside a kept hit of its
    # group exactly when the group's furthest kept end reaches its end (comparing with every kept hit
    # was quadratic: a 2 MB file took two minutes).
    reach: dict[str, int] = {}
    for hit in chosen:
        if reach.get(hit.term.group, -1) >= hit.end:
            continue
        out.append(hit)
        reach[hit.term.group] = max(reach.get(hit.term.group, -1), hit.end)
    return out


def _where(hit: _Hit, offset: int) -> int | str:
    return hit.start - offset if hit.start >= offset else "title"


def enrich(text: str, title: str | None = None, *, lexicons: Path | None = None) -> Enrichment:
    """Relevance, event types, places and actors of one report, with the evidence for each."""
    lex = _lexicons(resolved(lexicons or lexicon_dir()))
    head = f"{title.strip()}\n\n" if title and title.strip() and title.strip()[:60] not in text[:400] else ""
    full = head + text
    offset = len(head)
    hits = _scan(lex, full, lower_same_length(full))
    # actors first: armed actors add to relevance, their countries give places context
    actor_hits, actors, actor_evidence = _actors(lex, hits, full)
    relevance, relevance_evidence = _relevance(lex, hits, actor_hits, offset)
    event_types, type_evidence = _event_types(lex, hits, full, offset, relevance)
    countries = [a["country_code"] for a in actors if a.get("country_code")]
    actor_spans = sorted((h.start, h.end) for found in actor_hits.values() for h in found)
    matches = gazetteer().find(full, extra_countries=countries, exclude=actor_spans)
    places = [m.as_json() for m in matches]
    place_evidence = {m.place.name: {"surfaces": m.surfaces, "at": [s - offset if s >= offset else "title" for s, _ in m.spans[:5]]}
                      for m in matches}
    evidence = {"relevance": relevance_evidence, "event_types": type_evidence, "places": place_evidence,
                "actors": actor_evidence}
    return Enrichment(relevance, event_types, places, actors, evidence)


def _actors(lex: _Lexicons, hits: list[_Hit], full: str
            ) -> tuple[dict[int, list[_Hit]], list[dict[str, Any]], dict[str, Any]]:
    """(hits by actor index, the actors most mentioned first, the spellings found of each)."""
    actor_hits: dict[int, list[_Hit]] = defaultdict(list)
    for hit in _drop_overlapped(hits, "actor:"):
        actor_hits[int(hit.term.group.split(":", 1)[1])].append(hit)
    actors: list[dict[str, Any]] = []
    evidence: dict[str, Any] = {}
    for index, found in sorted(actor_hits.items(), key=lambda kv: (-len(kv[1]), kv[1][0].start)):
        actor = lex.actors[index]
        actors.append({"name": actor["name"], "kind": actor.get("kind", "unknown"), "country_code": actor.get("country"),
                       "mentions": len(found)})
        evidence[actor["name"]] = sorted({full[h.start:h.end] for h in found})
    return actor_hits, actors, evidence


def _relevance(lex: _Lexicons, hits: list[_Hit], actor_hits: dict[int, list[_Hit]], offset: int
               ) -> tuple[float, dict[str, Any]]:
    """Relevance in [0, 1): strong terms, ambiguous ones only beside a strong one, armed actors, minus
    off-topic terms, each term counted at most ``max_count`` times."""
    counts: Counter[str] = Counter()
    strong = ambiguous = off = 0.0
    terms: dict[str, dict[str, Any]] = {}
    has_strong = any(h.term.group.startswith("rel:") and not h.term.ambiguous for h in hits)
    for hit in _drop_overlapped(hits, "rel:") + _drop_overlapped(hits, "off:"):
        key = f"{hit.term.group}|{hit.term.text}"
        counts[key] += 1
        if counts[key] > lex.max_count:
            continue
        if hit.term.group.startswith("off:"):
            off += hit.term.weight
        elif hit.term.ambiguous:
            ambiguous += hit.term.weight if has_strong else 0.0  # alone, they say nothing of a war
        else:
            strong += hit.term.weight
        entry = terms.setdefault(key, {"term": hit.term.text, "group": hit.term.group.split(":", 1)[1],
                                       "weight": hit.term.weight if not hit.term.group.startswith("off:") else -hit.term.weight,
                                       "count": 0, "at": []})
        entry["count"] += 1
        if len(entry["at"]) < 3:
            entry["at"].append(_where(hit, offset))
    armed = sum(1 for index in actor_hits if lex.actors[index].get("armed"))
    actor_points = min(armed, 3) * 1.0
    score = max(0.0, strong + ambiguous + actor_points - off)
    evidence = {"score": round(score, 2), "strong": round(strong, 2), "ambiguous": round(ambiguous, 2),
                "armed_actors": actor_points, "off_topic": round(off, 2), "scale": lex.scale,
                "terms": sorted(terms.values(), key=lambda e: -abs(e["weight"]) * e["count"])[:25]}
    return round(1.0 - math.exp(-score / lex.scale), 3), evidence


def _event_types(lex: _Lexicons, hits: list[_Hit], full: str, offset: int, relevance: float
                 ) -> tuple[list[str], dict[str, Any]]:
    """The event types (with their parents) whose terms score enough in a relevant enough report."""
    scores: dict[str, float] = defaultdict(float)
    core: set[str] = set()  # types with a term of weight >= 2: weak words alone never make a type
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: Counter[str] = Counter()
    for hit in _drop_overlapped(hits, "event:"):
        type_id = hit.term.group.split(":", 1)[1]
        seen[f"{type_id}|{hit.term.text}"] += 1
        if seen[f"{type_id}|{hit.term.text}"] > lex.max_count:
            continue
        scores[type_id] += hit.term.weight
        if hit.term.weight >= 2:
            core.add(type_id)
        found[type_id].append({"term": hit.term.text, "text": full[hit.start:hit.end], "at": _where(hit, offset)})
    chosen: list[str] = []
    for type_id in EVENT_TYPES:
        spec = lex.types.get(type_id) or {}
        if (type_id in core and scores[type_id] >= float(spec.get("min_score", 2))
                and relevance >= float(spec.get("min_relevance", 0.3))):
            chosen.append(type_id)
            parent = spec.get("parent")
            if parent and parent not in chosen:
                chosen.append(parent)
    event_types = [t for t in EVENT_TYPES if t in chosen]
    return event_types, {t: {"score": round(scores[t], 2), "matches": found[t][:10]} for t in event_types}


def enrich_report(report: Any) -> Any:
    """Fill a :class:`sitrep.records.Report`'s enrichment fields in place (and return it)."""
    result = enrich(report.text, report.title)
    report.relevance = result.relevance
    report.event_types = result.event_types
    report.places = result.places
    report.actors = result.actors
    report.evidence = result.evidence
    return report
