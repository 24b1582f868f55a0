"""The Makefile's venv bootstrap and `make down`, on a copy of the project's build files (no install runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sitrep.settings import PROJECT_ROOT


def _project(tmp_path: Path, python: str) -> Path:
    """The build files beside a .venv whose interpreter (a pyenv or distro upgrade ago) is gone."""
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(f"/nonexistent/{python}")
    locksum = subprocess.run("cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1", shell=True, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout.strip()
    for stamp in (f".installed-{locksum}-3.10", f".installed-{locksum}"):  # installed, by this Makefile or the last
        (tmp_path / ".venv" / stamp).touch()
    return tmp_path


def _make(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=project, capture_output=True, text=True)


def test_a_venv_whose_python_is_gone_is_rebuilt_not_run(tmp_path):
    # The stamp was current, so `make demo` ran .venv/bin/sitrep: "cannot execute: required file not found".
    assert _make(_project(tmp_path, "python3.10"), "-q", "venv").returncode == 1  # out of date: rebuilt


def test_an_old_python_is_refused_in_one_line_before_anything_is_installed(tmp_path):
    project = _project(tmp_path, "python3.10")
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.10.13' && exit 0\nexit 1\n")
    old.chmod(0o755)

    done = _make(project, "venv", f"PYTHON={old}")

    assert done.returncode != 0 and "pip" not in done.stdout + done.stderr
    assert f"sitrep needs Python 3.11 or newer; {old} is Python 3.10.13: run make PYTHON=python3.11" in done.stderr


def test_make_down_installs_nothing_first(tmp_path):
    # `down` depended on the venv's stamp: after a changed lock it ran a whole install (failing offline)
    # and stopped nothing.
    done = _make(_project(tmp_path, "python3.10"), "down")
    assert done.returncode == 0 and done.stdout.strip() == "nothing to stop: .venv is not installed"
