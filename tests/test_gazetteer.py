"""The gazetteer: GeoNames names matched on token boundaries, disambiguated by context and population."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitrep.errors import ConfigError
from sitrep.gazetteer import Gazetteer, gazetteer, lower_same_length, places_lexicon_path


@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    return gazetteer()


def _found(gaz: Gazetteer, text: str, countries: tuple[str, ...] = ()) -> dict[str, tuple[str | None, int]]:
    return {m.place.name: (m.place.country_code, m.mentions) for m in gaz.find(text, extra_countries=countries)}


@pytest.mark.parametrize(
    ("text", "name", "country", "geonames_id"),
    [
        ("Shelling continued in Artemivsk overnight.", "Bakhmut", "UA", 713174),
        ("Russian sources said fighting raged around Artemovsk in the Donbas.", "Bakhmut", "UA", 713174),
        ("The road linking Bakhmut with Konstantinovka was cut.", "Kostiantynivka", "UA", 705104),
        ("Evacuation trains left Pokrovsk in the Donetsk region on Monday.", "Pokrovsk", "UA", 704422),
        ("Обстріл Бахмута тривав усю ніч.", "Bakhmut", "UA", 713174),
        ("Air raid sirens sounded in Kyiv and Kiev's suburbs.", "Kyiv", "UA", 703448),
    ],
    ids=["ukrainian-old-name", "russian-transliteration", "konstantinovka", "pokrovsk-donetsk", "cyrillic-genitive",
         "kiev-spelling"],
)
def test_alternate_names_resolve_to_the_geonames_place(gaz: Gazetteer, text: str, name: str, country: str,
                                                        geonames_id: int) -> None:
    match = next(m for m in gaz.find(text) if m.place.name == name)
    assert (match.place.country_code, match.place.geonames_id) == (country, geonames_id)
    assert match.place.lat is not None and match.place.lon is not None


def test_pokrovsk_without_context_is_the_largest(gaz: Gazetteer) -> None:
    """Pokrovsk alone: the Ukrainian city (60k) outranks Pokrovsk in Yakutia (10k) and Engels, once "Pokrovsk"."""
    assert _found(gaz, "Fighting near Pokrovsk intensified.")["Pokrovsk"] == ("UA", 1)


def test_small_homonyms_without_context_are_left_out(gaz: Gazetteer) -> None:
    """Without any country in the text, a town is named only when no town of comparable size abroad shares its name."""
    assert [m.place.name for m in gaz.find("Shelling hit Kurakhove.")] == ["Kurakhove"]
    assert gaz.find("Sirens sounded in Pokrovske.") == []  # villages in Ukraine and Russia alike


def test_country_context_picks_the_homonym(gaz: Gazetteer) -> None:
    """Two towns named Pokrovsk: a report about Russia's Yakutia gets the Russian one."""
    found = gaz.find("Floods hit Pokrovsk in Yakutia, Russia, on Monday.", extra_countries=("RU",))
    pokrovsk = next(m.place for m in found if m.place.name == "Pokrovsk")
    assert pokrovsk.country_code == "RU"


@pytest.mark.parametrize("text", [
    "A Parisian cafe reopened.",
    "The Kyivan Rus era.",
    "Kharkivska street was closed.",
])
def test_token_boundaries(gaz: Gazetteer, text: str) -> None:
    assert {m.place.name for m in gaz.find(text)} & {"Paris", "Kyiv", "Kharkiv"} == set()


def test_regions_need_the_region_word_or_a_name_of_their_own(gaz: Gazetteer) -> None:
    found = _found(gaz, "Strikes hit the Donetsk region and the Kharkiv oblast; Crimea was quiet.")
    assert found["Donetsk Oblast"] == ("UA", 1)
    assert found["Kharkiv Oblast"] == ("UA", 1)
    assert found["Crimea"] == ("UA", 1)
    assert "Donetsk" not in found and "Kharkiv" not in found


def test_cyrillic_region_adjectives(gaz: Gazetteer) -> None:
    assert _found(gaz, "Удар по Харківській області.") == {"Kharkiv Oblast": ("UA", 1)}
    assert _found(gaz, "Обстрел Курской области.") == {"Kursk Oblast": ("RU", 1)}


@pytest.mark.parametrize("text", [
    "Police said the man was arrested in a mobile home.",
    "Police and Mobile units arrived. Of course, nobody was hurt. Man overboard.",
    "President Vladimir Putin spoke.",
])
def test_common_words_and_names_are_not_places(gaz: Gazetteer, text: str) -> None:
    assert gaz.find(text) == []


@pytest.mark.parametrize(("text", "name", "country", "kind"), [
    ("Protesters gathered in Atlanta, Georgia, on Sunday.", "Georgia", "US", "region"),  # a dateline: the state
    ("Shelling hit Tbilisi, Georgia, overnight.", "Georgia", "GE", "country"),  # the country's own city
    ("Russian troops massed on the border with Georgia.", "Georgia", "GE", "country"),
])
def test_a_city_then_a_region_of_its_own_country_is_that_region(gaz: Gazetteer, text: str, name: str, country: str,
                                                                  kind: str) -> None:
    [match] = [m for m in gaz.find(text) if m.place.name == name]
    assert (match.place.country_code, match.place.kind) == (country, kind)


def test_mentions_and_spans(gaz: Gazetteer) -> None:
    text = "Kherson was shelled. In Kherson, two died; Kherson's mayor said."
    match = next(m for m in gaz.find(text) if m.place.name == "Kherson")
    assert match.mentions == 3
    assert [text[s:e] for s, e in match.spans] == ["Kherson"] * 3
    assert match.as_json() == {"name": "Kherson", "geonames_id": 706448, "country_code": "UA",
                               "lat": match.place.lat, "lon": match.place.lon, "mentions": 3, "kind": "city"}


def test_excluded_spans(gaz: Gazetteer) -> None:
    text = "Hamas said Gaza was hit."
    assert {m.place.name for m in gaz.find(text, exclude=[(0, 5)])} == {"Gaza"}


def test_lower_same_length_keeps_offsets() -> None:
    text = "İstanbul and Kyiv"
    assert len(lower_same_length(text)) == len(text)
    assert lower_same_length(text)[13:] == "kyiv"


def test_missing_lexicon_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="restore seeds/lexicons/places.yaml"):
        gazetteer(tmp_path / "places.yaml")


def test_default_lexicon_path() -> None:
    assert places_lexicon_path().name == "places.yaml" and places_lexicon_path().is_file()


@pytest.mark.parametrize(("text", "expected"), [
    ("U.S. and British warplanes struck Houthi targets in Yemen.", {"United States", "Yemen"}),
    ("Ракети влучили по Україні. Дані свідчать про загиблих.", {"Ukraine"}),
    ("Войска России обстреляли Харьков, сообщили власти Украины.", {"Russia", "Kharkiv", "Ukraine"}),
    ("He told us the convoy left London on Monday.", {"London"}),
    ("Us and them, they said of the talks.", set()),
], ids=["us-initials", "ukrainian-locative-not-data", "russian-genitives", "london-not-us", "pronoun"])
def test_function_words_that_name_a_country_or_a_big_city_count_when_written_as_names(gaz, text, expected):
    """jusText's function words hold real names ("U.S.", "London", "Україні", "России"): they were never
    places. Now one is, capitalised where no sentence starts, or in capitals; "Дані" (data) is not Denmark."""
    assert set(_found(gaz, text)) == expected


@pytest.mark.parametrize(("text", "name", "country"), [
    ("Russian drones struck Odessa overnight. The United States condemned the attack on Ukraine.", "Odesa", "UA"),
    ("The U.S. envoy arrived in Paris for talks with European ministers.", "Paris", "FR"),
    ("Washington said the talks in Vienna would go on, the United States said.", "Vienna", "AT"),
    ("A shooting in Odessa, Texas left three dead, police in Midland said.", "Odessa", "US"),
], ids=["odessa-us-named", "paris-us-named", "vienna-us-named", "odessa-texas-region-named"])
def test_a_named_country_does_not_move_a_city_of_a_million_to_its_small_namesake(gaz, text, name, country):
    """Naming the United States gave Paris, Vienna, Warsaw and Odessa to small US towns (the country's
    weight beat a population ten to twenty times larger); the town's region named still wins."""
    assert _found(gaz, text).get(name, (None,))[0] == country


@pytest.mark.parametrize("text", [
    "Officials said Marco Rubio met the envoy.", "The talks, said Lloyd Austin, went well.",
    "Senator Lindsey Graham visited the front.", "The ICC prosecutor Karim Khan said so.",
])
def test_a_surname_after_a_given_name_is_no_place(gaz, text):
    """Only the word after a match and a title before it were looked at: a given name before a surname
    made Rubio (Venezuela), Austin (US), Graham (US), Haan (Germany) places."""
    assert _found(gaz, text) == {}


def test_a_place_after_a_qualifier_or_another_place_is_still_a_place(gaz):
    found = _found(gaz, "Shelling hit Eastern Kharkiv overnight. Fighting near Pokrovsk and Kurakhove went on.")
    assert set(found) == {"Kharkiv", "Pokrovsk", "Kurakhove"}
    # One place right after another: the "is it a place?" lookups never matched (keys are stored padded).
    assert set(_found(gaz, "Israel Gaza militants clashed.")) == {"Israel", "Gaza"}
    assert {"Donetsk", "Avdiivka"} <= set(_found(gaz, "Shelling of Donetsk Avdiivka went on."))


@pytest.mark.parametrize(("text", "name", "kind", "country"), [
    ("Houthi rebels fired a missile at a vessel in the Red Sea off Yemen.", "Red Sea", "area", None),
    ("Egypt's Red Sea governorate closed its ports.", "Red Sea", "region", "EG"),
    ("Officials in the Kurdistan Region said drones hit Erbil.", "Kurdistan Region", "area", "IQ"),
], ids=["the-sea", "egypts-governorate", "iraqi-kurdistan"])
def test_an_area_of_the_lexicon_beats_a_same_named_region_unless_its_country_is_named(gaz, text, name, kind, country):
    """The Red Sea was Egypt's governorate (its name voted for Egypt and Sudan, then won on the votes),
    the Kurdistan Region Iran's province (a region word kept only regions)."""
    match = next(m for m in gaz.find(text) if m.place.name == name)
    assert (match.place.kind, match.place.country_code) == (kind, country)
