"""Enrichment: relevance, event types, places and actors of real-looking reports, with evidence."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sitrep.enrich import EVENT_TYPES, enrich, lexicon_dir
from sitrep.errors import ConfigError
from sitrep.pipeline import build_report, parse_seed_file
from sitrep.records import PageJob, Report
from sitrep.settings import DEFAULT_RELEVANCE_THRESHOLD, Settings

SEED = Path(__file__).resolve().parents[1] / "seeds" / "samples" / "000_b27345ed7055cdc8.txt"
THRESHOLD = DEFAULT_RELEVANCE_THRESHOLD

FOOTBALL = ("Arsenal and Manchester City are locked in a title battle as the Premier League season enters its final "
            "weeks. The striker scored twice on Saturday and the fans at the Emirates stadium sang until the final "
            "whistle; the manager said the fight for the trophy would go to the last match.")
PRICE_OFFENSIVE = ("Supermarket chain Lidl launched a price offensive on Monday, cutting prices on 500 products as it "
                   "battles Aldi and Tesco for market share. Analysts said the attack on rivals' margins could spark a "
                   "price war that shoppers would welcome; shares in Tesco fell 3 percent.")
FASHION = ("Parisian designers dazzled at Paris Fashion Week on Tuesday as models walked the runway in autumn "
           "collections. The brand's creative director called the show an assault on convention, and celebrities "
           "on the front row applauded the final look.")


@pytest.fixture(scope="module")
def seed() -> tuple[str, object]:
    _, text = parse_seed_file(SEED)
    return text, enrich(text)


def _places(result: object) -> dict[str, dict]:
    return {p["name"]: p for p in result.places}  # type: ignore[attr-defined]


def test_seed_sample_is_a_battle_near_bakhmut(seed: tuple[str, object]) -> None:
    text, result = seed
    assert result.relevance > THRESHOLD
    assert "battle" in result.event_types
    places = _places(result)
    bakhmut, kostiantynivka = places["Bakhmut"], places["Kostiantynivka"]
    assert (bakhmut["geonames_id"], bakhmut["country_code"]) == (713174, "UA")
    assert (bakhmut["lat"], bakhmut["lon"]) == pytest.approx((48.594, 37.999), abs=0.01)
    assert bakhmut["mentions"] == text.count("Bakhmut")
    assert kostiantynivka["country_code"] == "UA" and kostiantynivka["mentions"] == 1
    assert (kostiantynivka["lat"], kostiantynivka["lon"]) == pytest.approx((48.527, 37.706), abs=0.01)
    assert result.evidence["places"]["Kostiantynivka"]["surfaces"] == ["Konstantinovka"]
    actors = {a["name"]: a["kind"] for a in result.actors}
    assert actors["Armed Forces of Ukraine"] == "state_forces"
    assert actors["Russian forces"] == "state_forces"
    assert actors["Wagner Group"] == "pmc"


def test_seed_sample_evidence_points_at_the_words(seed: tuple[str, object]) -> None:
    text, result = seed
    battle = result.evidence["event_types"]["battle"]["matches"]
    assert battle and all(text[m["at"]:m["at"] + len(m["text"])] == m["text"] for m in battle)
    terms = result.evidence["relevance"]["terms"]
    assert any(t["term"].startswith("counter-attack") for t in terms)
    assert result.evidence["actors"]["Wagner Group"] == ["Wagner", "Wagner Group"]


@pytest.mark.parametrize("text", [FOOTBALL, PRICE_OFFENSIVE, FASHION], ids=["football-battle", "price-offensive", "fashion-week"])
def test_off_topic_stories_stay_below_threshold(text: str) -> None:
    result = enrich(text)
    assert result.relevance < THRESHOLD
    assert result.event_types == []
    assert result.actors == []


def test_parisian_is_not_paris() -> None:
    result = enrich(FASHION)
    assert [(p["name"], p["country_code"], p["mentions"]) for p in result.places] == [("Paris", "FR", 1)]


@pytest.mark.parametrize(
    ("text", "event_types", "places", "actors"),
    [
        ("Russian forces shelled Kharkiv overnight, killing two civilians, the regional governor said.",
         ["explosion_remote_violence"], [("Kharkiv", "UA")], ["Russian forces"]),
        ("Російські війська обстріляли Костянтинівку, загинули двоє цивільних, повідомила Донецька обласна "
         "військова адміністрація.", ["explosion_remote_violence"],
         [("Kostiantynivka", "UA")], ["Russian forces"]),
        ("В результате обстрела Белгородской области погибли два мирных жителя, сообщил губернатор.",
         ["explosion_remote_violence"], [("Belgorod Oblast", "RU")], []),
        ("Gunmen stormed a village in Zamfara state, killing 30 villagers and kidnapping dozens, police said.",
         ["violence_against_civilians"], [("Zamfara", "NG")], []),
        ("Pokrovsk came under attack again as Russian troops captured a village in the Donetsk region.",
         ["territory_change"], [("Pokrovsk", "UA"), ("Donetsk Oblast", "UA")], ["Russian forces"]),
        ("An Israeli airstrike on a school sheltering displaced families in Nuseirat, in the central Gaza Strip, "
         "killed at least 18 people, Gaza's civil defence said. The IDF said it targeted Hamas militants.",
         ["explosion_remote_violence", "air_drone_strike"], [("An Nuşayrāt", "PS"), ("Gaza Strip", "PS")],
         ["IDF", "Hamas"]),
        ("Thousands of protesters marched through Tbilisi on Sunday against the foreign agents law; police used "
         "water cannon and tear gas to disperse the crowd outside parliament.",
         ["protest", "riot"], [("Tbilisi", "GE")], []),
    ],
    ids=["en-shelling", "uk-shelling", "ru-region", "zamfara-gunmen", "pokrovsk-donetsk", "gaza-airstrike",
         "tbilisi-protest"],
)
def test_wire_snippets(text: str, event_types: list[str], places: list[tuple[str, str]], actors: list[str]) -> None:
    result = enrich(text)
    assert set(event_types) <= set(result.event_types)
    found = [(p["name"], p["country_code"]) for p in result.places]
    assert all(place in found for place in places), found
    assert [a["name"] for a in result.actors][: len(actors)] == actors or set(actors) <= {a["name"] for a in result.actors}


def test_conflict_snippets_are_relevant() -> None:
    assert enrich("Russian forces shelled Kharkiv overnight, killing two civilians.").relevance > THRESHOLD


@pytest.mark.parametrize("text", [
    "Police in Mobile said a man was arrested on Tuesday. Of the 12 people questioned, none was charged.",
    "Vladimir Putin met Xi Jinping in Beijing on Thursday.",
])
def test_common_words_and_person_names_are_not_places(text: str) -> None:
    names = {p["name"] for p in enrich(text).places}
    assert names.isdisjoint({"Police", "Mobile", "Man", "Of", "Vladimir"}), names


def test_event_types_come_from_the_fixed_taxonomy(seed: tuple[str, object]) -> None:
    assert set(seed[1].event_types) <= set(EVENT_TYPES)


def test_build_report_fills_the_enrichment_fields() -> None:
    day, text = parse_seed_file(SEED)
    job = PageJob(entry_id=1, source_id=1, url="file:///seed.txt", final_url="file:///seed.txt", body=b"",
                  fetched_at=datetime(2023, 3, 21, tzinfo=UTC), plain_text=text)
    report = build_report(job)
    assert isinstance(report, Report)
    assert report.relevance is not None and report.relevance > THRESHOLD
    assert "battle" in report.event_types
    assert {"Bakhmut", "Kostiantynivka"} <= {p["name"] for p in report.places}
    assert {"Wagner Group", "Russian forces", "Armed Forces of Ukraine"} <= {a["name"] for a in report.actors}
    assert set(report.evidence) == {"relevance", "event_types", "places", "actors"}


def test_weak_words_alone_say_nothing_of_a_war_and_count_beside_a_strong_one() -> None:
    # relevance.yaml: ambiguous groups "count only when a non-ambiguous conflict term is in the text too".
    # Half their weight alone put a sanctions-and-summit story over the alerting threshold (0.64).
    title = "EU leaders weigh new sanctions as NATO summit opens"
    text = ("European Union leaders met in Brussels on Thursday to weigh a new package of sanctions before the NATO "
            "summit. Diplomats said negotiations on the sanctions package were difficult, and NATO officials said "
            "negotiations would continue. Hungary said it would block the sanctions unless the negotiations addressed "
            "its concerns, while NATO members discussed weapons production and the army budget.")
    calm = enrich(text, title)
    assert calm.relevance is not None and calm.relevance < THRESHOLD
    assert calm.evidence["relevance"]["ambiguous"] == 0
    war = enrich(text + " Overnight, shelling hit the port again.", title)
    assert war.evidence["relevance"]["ambiguous"] > 0 and war.relevance is not None and war.relevance > calm.relevance


@pytest.mark.parametrize(("title", "text", "types"), [
    ("Drone footage shows ruined Vovchansk", "Drone footage captured by a Ukrainian brigade shows the destroyed city of "
     "Vovchansk, where heavy fighting and shelling have continued for weeks.", {"not": "territory_change"}),
    ("Candidate quits", "The candidate withdrew from the presidential race on Monday after shelling hit the capital,"
     " officials said.", {"not": "territory_change"}),
    ("Fire in Kharkiv hospital", "A fire broke out in the hospital annex in Kharkiv after shelling; troops helped"
     " evacuate patients.", {"not": "territory_change"}),
    ("Parliament rejects tax plan", "Parliament shot down a proposal to raise taxes for artillery shells; the minister"
     " said shelling of the border would go on.", {"not": "air_drone_strike"}),
    ("RSF attack on Zamzam camp", "Paramilitary Rapid Support Forces attacked the Zamzam displacement camp near El Fasher,"
     " killing more than 100 people, aid groups said.", {"is": "violence_against_civilians"}),
    ("Israeli strikes kill dozens in Gaza", "Israeli strikes killed at least 30 Palestinians across the Gaza Strip on"
     " Tuesday, including children sheltering in a school, the health ministry said.", {"is": "explosion_remote_violence"}),
])
def test_event_types_an_analyst_would_expect(title, text, types):
    got = enrich(text, title).event_types
    if "is" in types:
        assert types["is"] in got, got
    if "not" in types:
        assert types["not"] not in got, got


def test_one_word_is_one_mention_of_its_actor_and_one_piece_of_evidence():
    # An actor's name is also among its aliases, and "protest*" and "protester*" both match "Protesters":
    # each word counted twice (mentions 2 for one "Hamas", the protest score doubled).
    found = enrich("Russian forces shelled the town overnight. Hamas said protesters gathered. Protesters marched.")
    assert {a["name"]: a["mentions"] for a in found.actors} == {"Russian forces": 1, "Hamas": 1}
    protest = found.evidence["event_types"]["protest"]["matches"]
    assert [m["at"] for m in protest] == sorted({m["at"] for m in protest}) and len(protest) == 3  # 2 words, "marched"


def test_threshold_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITREP_RELEVANCE_THRESHOLD", "0.7")
    assert Settings.from_env().relevance_threshold == 0.7
    monkeypatch.setenv("SITREP_RELEVANCE_THRESHOLD", "1.5")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        Settings.from_env()


def test_users_extend_lexicons_without_code(tmp_path: Path) -> None:
    folder = tmp_path / "lexicons"
    shutil.copytree(lexicon_dir(), folder)
    actors = folder / "actors.yaml"
    actors.write_text(actors.read_text(encoding="utf-8") + (
        "  - name: Sahel Liberation Front\n    kind: rebel_group\n    armed: true\n"
        "    aliases: [Sahel Liberation Front, SLF fighters]\n"), encoding="utf-8")
    result = enrich("SLF fighters ambushed a convoy near Gao.", lexicons=folder)
    assert {"name": "Sahel Liberation Front", "kind": "rebel_group", "country_code": None, "mentions": 1} in result.actors


def test_broken_lexicon_says_where(tmp_path: Path) -> None:
    folder = tmp_path / "lexicons"
    shutil.copytree(lexicon_dir(), folder)
    (folder / "event_types.yaml").write_text("types:\n  coup:\n    terms: {2: [coup]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown type 'coup'"):
        enrich("text", lexicons=folder)
