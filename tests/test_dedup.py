"""The dedup layer's pure parts: canonical URLs, text fingerprints, LSH keys and the verification rule.

The database side (aliases, revisions, stories, concurrency) is in tests/test_store.py.
"""

from __future__ import annotations

import random
import re
import unicodedata
from datetime import UTC, datetime

import pytest

from sitrep import dedup
from sitrep.normalize import canonical_url, content_hash, to_report
from sitrep.records import Extracted, PageJob
from sitrep.settings import DedupSettings
from tests.texts import article, text

# ------------------------------------------------------------------------------------ canonical URL


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://example.com/a/story.html", "https://example.com/a/story.html"),
        ("http://WWW.Example.COM:80/a/story.html", "https://example.com/a/story.html"),
        ("https://example.com:443/a/story.html#comments", "https://example.com/a/story.html"),
        ("https://example.com/a/story/", "https://example.com/a/story"),
        ("https://example.com/a?utm_source=rss&utm_medium=feed&fbclid=abc&gclid=1", "https://example.com/a"),
        ("https://example.com/a?ocid=msn&cmpid=x&outputType=amp", "https://example.com/a"),
        ("https://example.com/a?mc_cid=1&mc_eid=2&yclid=3&_ga=4&igshid=5&ref=tw&pk_campaign=x&WT.mc_id=y",
         "https://example.com/a"),
        ("https://example.com/a?xtor=RSS-1&cid=9", "https://example.com/a?cid=9"),
        ("https://example.com/a?sessionid=abc&PHPSESSID=x&clickid=1&partnerid=2&aff=3&keyword=k&ad_id=4&ads_x=5&ga_y=6",
         "https://example.com/a"),
        ("https://example.com/article.php?story=123&utm_campaign=x", "https://example.com/article.php?story=123"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        ("https://m.example.com/news/story", "https://example.com/news/story"),
        ("https://mobile.example.com/news/story", "https://example.com/news/story"),
        ("https://amp.example.co.uk/news/story", "https://example.co.uk/news/story"),
        ("https://example.com/news/story/amp/", "https://example.com/news/story"),
        ("https://example.com/news/story.amp.html", "https://example.com/news/story.html"),
        ("https://example.com/news/story.amp", "https://example.com/news/story"),
        ("http://127.0.0.1:8081/2024/06/10/odesa.html?utm_source=rss", "https://127.0.0.1:8081/2024/06/10/odesa.html"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com/", "https://example.com/"),
    ],
)
def test_canonical_url_spells_one_article_one_way(url, canonical):
    assert canonical_url(url) == canonical
    assert canonical_url(canonical) == canonical  # idempotent


@pytest.mark.parametrize(
    "url",
    [
        "https://m.co/story",  # "m" is the registered domain here, not a mobile label
        "https://example.com/camp",  # "amp" inside a word is not an AMP path
        "https://example.com/news?id=7",  # a parameter that selects content stays
        # courlan's filter matched names containing cid, eid, uid, ga, ref, source...: two articles, one URL
        "https://example.com/article.php?cid=101",
        "https://example.com/article.php?eid=7",
        "https://example.com/view?uid=12",
        "https://example.com/photos?gallery=3",
        "https://example.com/a?game=2",
        "https://example.com/a?reference=x",
        "https://example.com/a?source_id=4",
    ],
)
def test_canonical_url_leaves_what_is_not_a_variant_alone(url):
    assert canonical_url(url) == url


@pytest.mark.parametrize(
    ("declared", "page", "trusted"),
    [
        ("https://example.com/news/story", "https://m.example.com/news/story?amp=1", True),
        ("https://www.example.com/news/story-2", "https://example.com/news/story?id=2", True),
        ("https://example.com/", "https://example.com/news/story", False),  # every page -> home
        ("https://wire.example/original", "https://copier.example/copy", False),  # syndication: near-dup layer
        ("http://127.0.0.1:8001/a", "http://127.0.0.1:8002/b", False),  # another demo site
        ("ftp://example.com/a", "https://example.com/a", False),
    ],
)
def test_a_declared_canonical_is_used_only_when_it_is_trustworthy(declared, page, trusted):
    job = PageJob(entry_id=1, source_id=1, url=page, final_url=page, body=b"", fetched_at=datetime.now(UTC))
    report = to_report(job, Extracted(text="Some text of the article.", method="test", canonical_url=declared))
    assert report.canonical_url == (canonical_url(declared) if trusted else canonical_url(page))


def test_content_hash_ignores_case_punctuation_and_spacing():
    assert content_hash("Shelling  hit Kharkiv, officials said.\n") == content_hash("shelling hit kharkiv officials said")
    assert content_hash("Shelling hit Kharkiv") != content_hash("Shelling hit Odesa")


# ----------------------------------------------------------------------------------- fingerprints


def test_tokens_and_shingles_fold_noise_away():
    assert dedup.tokens("“Drones”  hit — the PORT, said   officials.") == ["drones", "hit", "the", "port", "said", "officials"]
    assert dedup.shingles(["a", "b", "c", "d", "e", "f"]) == {"a b c d e", "b c d e f"}
    assert dedup.shingles(["only", "three", "words"]) == {"only three words"}
    assert dedup.shingles([]) == set()


def _regex_tokens(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def test_tokens_are_the_regex_words_of_the_folded_text_on_every_kind_of_character():
    """tokens() skips the regex on ASCII text (after typographic marks become spaces): the same words."""
    for char in map(chr, range(0x3000)):  # ASCII, Latin, combining marks, punctuation, spaces, letterlike forms
        for sample in (char, f"Ab{char}cd", f"{char}x{char}9_{char}"):
            assert dedup.tokens(sample) == _regex_tokens(sample), repr(sample)
    alphabet = [chr(i) for i in range(128)] + list(dedup._MARKS) + list("éßİＯ\u0301ﬁ½²\u2009\u3000。")
    rnd = random.Random(9)
    for _ in range(5000):
        sample = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(40)))
        assert dedup.tokens(sample) == _regex_tokens(sample), repr(sample)
    assert dedup.tokens("Ｎａｔｏ’s «Kharkiv» — Kyiv…") == ["nato", "s", "kharkiv", "kyiv"]


def test_band_keys_are_deterministic_and_have_the_documented_layout():
    body = text(article(1))
    keys = dedup.band_keys(body)
    assert keys == dedup.band_keys(body)
    assert len(keys) == dedup.MAX_KEYS == len(dedup.split_keys(keys))
    assert all(-(2**63) <= k < 2**63 for k in keys)  # fits a bigint
    assert dedup.band_keys("") == [] and dedup.band_keys(" ... ") == []


def test_band_keys_are_datasketchs_minhash_of_the_shingles_hashed_with_its_default_hash():
    """The keys in story_bands were made this way: a change here would hide every earlier report from
    the near-duplicate layer, silently."""
    from datasketch import MinHash

    body = text(article(2))

    def expected(words: list[str], bands: int, rows: int, first_band: int) -> list[int]:
        minhash = MinHash(num_perm=bands * rows, seed=dedup._SEED)  # hashfunc: datasketch's sha1_hash32
        minhash.update_batch([shingle.encode("utf-8") for shingle in dedup.shingles(words)])
        return dedup._keys(minhash.hashvalues, bands, rows, first_band)

    keys = dedup.band_keys(body)
    assert keys[: dedup.FULL_BANDS] == expected(dedup.tokens(body), dedup.FULL_BANDS, dedup.FULL_ROWS, 0)
    windows = dedup.lede_windows(body)
    assert len(windows) == dedup.LEDE_WINDOWS
    for n, window in enumerate(windows):
        start = dedup.FULL_BANDS + n * dedup.LEDE_BANDS
        assert keys[start : start + dedup.LEDE_BANDS] == expected(window, dedup.LEDE_BANDS, dedup.LEDE_ROWS, dedup.FULL_BANDS)


@pytest.mark.parametrize(
    "variant",
    [
        lambda p: p[:-1],  # a paragraph dropped
        lambda p: [*p, "Additional reporting by the regional desk; editing by the night editor."],
        lambda p: p[:2],  # cut down to its lede
        lambda p: [x.upper().replace(" ", "  ") + " !!" for x in p],  # case, spacing and punctuation
        lambda p: ["Advertisement. Subscribe to our channel for the latest news.", *p],  # other chrome
    ],
    ids=["dropped", "added", "lede", "noise", "chrome"],
)
def test_a_variant_shares_an_lsh_band_and_passes_verification(variant):
    original = article(2)
    copy = variant(original)
    assert set(dedup.band_keys(text(original))) & set(dedup.band_keys(text(copy)))
    rules = DedupSettings()
    sim = dedup.compare(dedup.shingles(dedup.tokens(text(original))), dedup.shingles(dedup.tokens(text(copy))))
    assert dedup.is_near_duplicate(sim, jaccard=rules.jaccard, containment=rules.containment,
                                   min_shingles=rules.min_shingles)


def test_distinct_articles_share_no_band_and_fail_verification():
    a, b = text(article(3)), text(article(4))
    assert not set(dedup.band_keys(a)) & set(dedup.band_keys(b))
    sim = dedup.compare(dedup.shingles(dedup.tokens(a)), dedup.shingles(dedup.tokens(b)))
    assert not dedup.is_near_duplicate(sim, jaccard=0.5, containment=0.8, min_shingles=25)


@pytest.mark.parametrize(
    ("sim", "near"),
    [
        (dedup.Similarity(jaccard=0.5, containment=0.6, smaller=300), True),  # Jaccard at the threshold
        (dedup.Similarity(jaccard=0.49, containment=0.6, smaller=300), False),
        (dedup.Similarity(jaccard=0.2, containment=0.8, smaller=25), True),  # a lede contained in the whole
        (dedup.Similarity(jaccard=0.2, containment=0.79, smaller=300), False),
        (dedup.Similarity(jaccard=0.05, containment=1.0, smaller=24), False),  # too short to call contained
    ],
)
def test_the_verification_rule(sim, near):
    assert dedup.is_near_duplicate(sim, jaccard=0.5, containment=0.8, min_shingles=25) is near


def test_compare_measures_exact_jaccard_and_containment():
    sim = dedup.compare({"a", "b", "c", "d"}, {"c", "d"})
    assert (sim.jaccard, sim.containment, sim.smaller) == (0.5, 1.0, 2)
    assert dedup.compare(set(), {"a"}) == dedup.Similarity(0.0, 0.0, 0)


def test_thresholds_are_settings(monkeypatch):
    monkeypatch.setenv("SITREP_DEDUP_JACCARD", "0.6")
    monkeypatch.setenv("SITREP_DEDUP_CONTAINMENT", "0.9")
    monkeypatch.setenv("SITREP_DEDUP_MIN_SHINGLES", "40")
    monkeypatch.setenv("SITREP_DEDUP_WINDOW_DAYS", "2.5")
    assert DedupSettings.from_env() == DedupSettings(jaccard=0.6, containment=0.9, min_shingles=40, window_days=2.5)


def test_the_loader_and_the_dag_process_do_not_import_scipy():
    """datasketch's package imports scipy (0.7 s); only band_keys (in the workers) needs datasketch."""
    import subprocess
    import sys

    probe = ("import sys, sitrep.pipeline, sitrep.store, sitrep.cli; "
             "print(sorted(m for m in ('datasketch', 'scipy') if m in sys.modules)); "
             "from sitrep.dedup import band_keys; band_keys('a b c d e f'); "
             "print('datasketch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
