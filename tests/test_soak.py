"""utils/soak.py for a few seconds against a server on the shipped model: every kind of traffic
runs, nothing fails, the malformed requests are rejected with 4xx and the server's memory is read.
A short run keeps the script from rotting; the 5-minute soak is run by hand (see its docstring)."""

from __future__ import annotations

import pytest

from test_server import gguf  # noqa: F401  (the shipped model converted once per module)

pytest.importorskip("uvicorn")


def test_short_soak_has_no_failures(engine_lib, gguf, tmp_path):  # noqa: F811
    from utils.load_test import local_server_process
    from utils.soak import format_report, soak

    args = ["--parallel", "2", "--queue-size", "2", "-t", "1", "-c", "256"]
    with local_server_process(gguf, args, log_path=tmp_path / "server.log") as (url, proc):
        report = soak(url, duration=6, workers=3, burst=8, seed=1, pid=proc.pid)
    text = format_report(report)
    assert not report.failures, text
    assert report.ok > 0 and report.latencies_ms, text
    assert any(k.startswith("malformed 4") for k in report.rejected), text
    assert report.rss_start_kb and report.rss_end_kb, text
