"""Every YAML file a user writes (feeds, alert rules, lexicons) fails in one line that names it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sitrep import alerts, enrich, gazetteer, sources
from sitrep.errors import ConfigError

READERS: dict[str, Callable[[Path], Any]] = {
    "feeds": sources.load_feed_file,
    "alert rules": alerts.load_rules,
    "a lexicon": enrich._read_yaml,
    "the places lexicon": gazetteer._load_places_lexicon,
}

BROKEN = {
    # A Latin-1 file: a raw UnicodeDecodeError traceback from every reader but the feeds file's.
    "not UTF-8": ("rules:\n  - name: Kyiv caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 25); save "),
    # The parser's four-line dump (with the offending line quoted) was the message of the lexicons' readers.
    "bad YAML": (b"groups: [\n  - a: b\n  bad\n", "not valid YAML at line 2 (expected the node content, but found '-')"),
    # YAML reads these but cannot build them: a ValueError, a traceback past the reader
    "impossible date": (b"since: 2024-02-30\n", "not valid YAML (ValueError: day is out of range for month)"),
    "bad int": (b"rules: !!int high\n", "not valid YAML (ValueError: invalid literal for int()"),
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("case", BROKEN.keys())
def test_a_broken_file_is_one_line_that_names_it(reader, case, tmp_path):
    content, expected = BROKEN[case]
    path = tmp_path / "file.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_a_missing_file_or_a_folder_says_so(reader, tmp_path):
    for path, expected in ((tmp_path / "gone.yaml", "no such file"), (tmp_path, "is a directory")):
        with pytest.raises(ConfigError) as caught:
            reader(path)
        assert str(caught.value).startswith(f"{path}: {expected}")
