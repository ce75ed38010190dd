"""bitnet-bench and utils/e2e_benchmark.py on the tiny model: the shape of their tables and JSON,
and clear one-line errors for bad flags. Speeds are printed, never checked (timing is not
testable on a shared machine); one recorded run per test keeps this fast.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from click.testing import CliRunner

from utils import e2e_benchmark


def bench(engine_bin, *args):
    return subprocess.run([str(engine_bin / "bitnet-bench"), *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


ROW = re.compile(r"^\| (\S+) \| ([\d.]+) [MG]iB \| ([\d.]+) [MB] \| (\S+ / \S+) \| (\S+) \| \S+ \| (\d+) \| (\S+) \| "
                 r"([\d.]+) ± ([\d.]+) \|$")


def test_markdown_table(engine_bin, tiny_gguf):
    r = bench(engine_bin, "-m", tiny_gguf, "-p", "16,32", "-n", "8", "-pg", "16,4", "-t", "1,2", "-r", "2")
    assert r.returncode == 0, r.stderr
    rows = [ROW.match(line) for line in r.stdout.splitlines() if line.startswith("| ggml")]
    assert all(rows), r.stdout
    got = [(m.group(6), m.group(7)) for m in rows]
    want = [(t, test) for t in ("1", "2") for test in ("pp16", "pp32", "tg8", "pp16+tg4")]
    assert got == want
    assert all(m.group(4) == "I2_S / F16" and float(m.group(8)) > 0 for m in rows)
    assert "GB/s" not in r.stdout  # bandwidth footnotes come with --membw only
    assert "run 2/2" in r.stderr  # progress goes to stderr


def test_membw_adds_the_bandwidth_footnotes(engine_bin, tiny_gguf):
    r = bench(engine_bin, "-m", tiny_gguf, "-p", "0", "-n", "4", "-t", "1", "-r", "1", "--membw")
    assert r.returncode == 0, r.stderr
    assert "plain read loop, 1 thread(s):" in r.stdout
    assert re.search(r"tg4, 1 thread\(s\): [\d.]+ GB/s of weights .* of the plain read loop", r.stdout), r.stdout


def same_named_copies(tiny_gguf, tmp_path):
    """Two copies of the model named as setup_env.py names them, in folders a/x/ and b/x/."""
    paths = [tmp_path / d / "x" / "ggml-model-i2_s.gguf" for d in ("a", "b")]
    for p in paths:
        p.parent.mkdir(parents=True)
        p.write_bytes(tiny_gguf.read_bytes())
    return paths


def test_labels_tell_same_named_files_apart(engine_bin, tiny_gguf, tmp_path):
    a, b = same_named_copies(tiny_gguf, tmp_path)
    r = bench(engine_bin, "-m", f"{a},{b}", "-m", a, "-p", "0", "-n", "2", "-t", "1", "-r", "1", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert [x["model"] for x in json.loads(r.stdout)["results"]] == [
        "a/x/ggml-model-i2_s.gguf", "b/x/ggml-model-i2_s.gguf", "a/x/ggml-model-i2_s.gguf"]
    assert e2e_benchmark.model_labels([a, b, a]) == [
        "a/x/ggml-model-i2_s.gguf", "b/x/ggml-model-i2_s.gguf", "a/x/ggml-model-i2_s.gguf"]
    assert e2e_benchmark.model_labels([a, tmp_path / "a" / "other.gguf"]) == ["ggml-model-i2_s.gguf", "other.gguf"]


def test_json_and_profile(engine_bin, tiny_gguf):
    r = bench(engine_bin, "-m", tiny_gguf, "-p", "8", "-n", "4", "-t", "1", "-r", "3", "-o", "json", "--profile")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["test"] for x in out["results"]] == ["pp8", "tg4"]
    for x in out["results"]:
        assert len(x["samples_ts"]) == 3 and x["avg_ts"] > 0 and x["stddev_ts"] >= 0
        assert x["n_params"] > 0 and x["bytes_per_token"] > 0 and x["n_threads"] == 1
        # Per-operation shares plus the unprofiled rest add up to the measured time.
        assert x["profile"][-1]["op"] == "other"
        assert sum(p["share"] for p in x["profile"]) == pytest.approx(1.0, abs=1e-3)


def test_csv(engine_bin, tiny_gguf):
    r = bench(engine_bin, "-m", tiny_gguf, "-p", "0", "-n", "4", "-t", "1", "-r", "1", "-o", "csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("model,size_bytes,n_params,type,isa,kv,n_threads")
    assert len(lines) == 2 and ",tg4," in lines[1]


@pytest.mark.parametrize("args, message", [
    (["-p", "abc"], "invalid value 'abc' for -p"),
    (["-t", "0"], "-t 0 is out of range"),
    (["-o", "xml"], "unknown output format 'xml'"),
    (["-pg", "16"], "-pg takes two numbers"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
    (["-p", "0", "-n", "0"], "no test selected"),
])
def test_bad_flags(engine_bin, tiny_gguf, args, message):
    r = bench(engine_bin, "-m", tiny_gguf, *args)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_missing_model(engine_bin, tmp_path):
    r = bench(engine_bin, "-m", tmp_path / "nope.gguf", "-r", "1")
    assert r.returncode == 1 and "nope.gguf" in r.stderr and r.stdout == ""


def test_e2e_benchmark_two_models(engine_bin, tiny_gguf, tmp_path):
    second = tmp_path / "copy.gguf"
    second.write_bytes(tiny_gguf.read_bytes())
    rows = e2e_benchmark.benchmark([tiny_gguf, second], n_prompt=8, n_gen=4, threads=[1], reps=2)
    assert [(r["model"], r["test"]) for r in rows] == [
        ("ggml-model-i2_s.gguf", "pp8"), ("ggml-model-i2_s.gguf", "tg4"), ("copy.gguf", "pp8"), ("copy.gguf", "tg4")]
    assert all(len(r["samples_ts"]) == 2 for r in rows)
    assert rows[0]["vs_first"] == 1.0 and rows[2]["vs_first"] > 0
    table = e2e_benchmark.format_table(rows)
    assert table.splitlines()[0].endswith("| vs first |") and len(table.splitlines()) == 6


def test_e2e_benchmark_same_named_files_and_the_same_file_twice(engine_bin, tiny_gguf, tmp_path):
    a, b = same_named_copies(tiny_gguf, tmp_path)
    rows = e2e_benchmark.benchmark([a, b, a], n_prompt=0, n_gen=2, threads=[1], reps=1)
    assert [r["model"] for r in rows] == ["a/x/ggml-model-i2_s.gguf", "b/x/ggml-model-i2_s.gguf",
                                          "a/x/ggml-model-i2_s.gguf"]
    assert rows[0]["vs_first"] == 1.0
    assert rows[2]["vs_first"] == pytest.approx(rows[2]["avg_ts"] / rows[0]["avg_ts"])
    rows = e2e_benchmark.benchmark([tiny_gguf, tiny_gguf], n_prompt=0, n_gen=2, threads=[1], reps=1)
    table = e2e_benchmark.format_table(rows).splitlines()
    assert table[0].endswith("| vs first |") and table[-1].endswith("x |"), table


def test_e2e_benchmark_cli(engine_bin, tiny_gguf, tmp_path):
    runner = CliRunner()
    r = runner.invoke(e2e_benchmark.main, ["-m", str(tiny_gguf), "-p", "8", "-n", "0", "-t", "1", "-r", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["test"] for x in json.loads(r.stdout)] == ["pp8"]
    r = runner.invoke(e2e_benchmark.main, ["-m", str(tmp_path / "nope.gguf")])
    assert r.exit_code == 1 and "nope.gguf not found" in r.output
    r = runner.invoke(e2e_benchmark.main, ["-m", str(tiny_gguf), "-t", "two"])
    assert r.exit_code == 2 and "not a comma-separated list" in r.output


def test_e2e_benchmark_depth_and_cache(engine_bin, tiny_gguf):
    """-d, -gp and the cache flags pass through to bitnet-bench: a row per (cache, depth, test)."""
    runner = CliRunner()
    r = runner.invoke(e2e_benchmark.main, ["-m", str(tiny_gguf), "-p", "8", "-n", "2", "-t", "1", "-r", "1",
                                           "-d", "0,24", "-gp", "40,2", "-ctk", "f32,q8_0", "--json"])
    assert r.exit_code == 0, r.output
    got = {(x["kv"], x["test"]) for x in json.loads(r.stdout)}
    assert got == {(kv, t) for kv in ("f32", "q8_0/f32")
                   for t in ("pp8", "tg2", "pp8 @ d24", "tg2 @ d24", "tg2 @ d40")}
    r = runner.invoke(e2e_benchmark.main, ["-m", str(tiny_gguf), "-gp", "40"])
    assert r.exit_code == 2 and "expected 2 numbers" in r.output
