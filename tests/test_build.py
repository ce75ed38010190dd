"""The engine build is never silent: Ninja's step lines reach the user, as plain lines when stderr
is not a terminal (logs, CI) and as one rewritten line on a terminal, and the test session says it
is building before the minutes a fresh clone takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bitnet import common

ROOT = Path(__file__).resolve().parent.parent

NINJA_LIKE = ("import sys; print('[0/2] Re-checking globbed directories...'); "
              "print('[1/2] Building CXX object a.o'); print('src/a.cpp:1: warning: unused'); "
              "print('[2/2] Linking CXX executable bin/x')")


def test_steps_are_plain_lines_off_a_terminal(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    live = common.LiveLine()
    common.run_logged([sys.executable, "-c", NINJA_LIKE], tmp_path / "build.log", "building", status=live)
    live.clear()
    err = capfd.readouterr().err
    assert err.splitlines() == ["      [1/2] Building CXX object a.o", "      [2/2] Linking CXX executable bin/x"]
    assert "warning: unused" in (tmp_path / "build.log").read_text()  # the rest stays in the log


def test_steps_rewrite_one_line_on_a_terminal(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    live = common.LiveLine()
    common.run_logged([sys.executable, "-c", NINJA_LIKE], tmp_path / "build.log", "building", status=live)
    live.clear()
    err = capfd.readouterr().err
    assert "\n" not in err and "\r\x1b[K      [2/2] Linking" in err and err.endswith("\r\x1b[K")


def test_test_session_says_it_builds_the_engine(engine_bin):
    """A pytest run (here: one quick test of this suite) tells the user it is building, past pytest's
    output capture."""
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_cli.py::test_short_prompt_reports_no_progress"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "building the engine in " in res.stderr, res.stderr
