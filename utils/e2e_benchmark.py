#!/usr/bin/env python3
"""End-to-end speed of one or more converted models, with the engine's bitnet-bench.

    python utils/e2e_benchmark.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -p 512 -n 128 -t 4
    python utils/e2e_benchmark.py -m a.gguf -m b.gguf -p 128 -n 64 -t 1,2 -r 5 --json

Flags as bitnet.cpp's utils/e2e_benchmark.py (-m -p -n -t), plus -r repetitions, -b batch size,
--json, and several -m side by side. The repetitions of all models are interleaved (run 1 of every
model, then run 2 of every model, ...), one bitnet-bench process per run, so that a noisy
neighbour or a change of clock speed hits every model alike; each process warms up before its
recorded run. The table gives tokens/s mean ± std over the runs and, with several models, each
row's speed relative to the first model's on the same test. ``BITNET_BUILD_DIR`` overrides build/.

``benchmark()`` returns the rows and ``format_table()`` renders them: that is what tests call.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import BitnetError, display_path, engine_tool, run_cli


def run_bench_json(cmd: list[str]) -> dict:
    """Run one bitnet-bench command with ``-o json`` and return its parsed output. Its progress
    (stderr) is dropped; a failure is a ``BitnetError`` carrying the tool's one-line message."""
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, errors="replace",
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        lines = [line for line in r.stderr.strip().splitlines() if line.startswith("error:")]
        msg = lines[-1].removeprefix("error: ") if lines else f"bitnet-bench exited with code {r.returncode}"
        raise BitnetError(f"bitnet-bench failed: {msg}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise BitnetError(f"bitnet-bench printed no valid JSON ({e}); its output was:\n{r.stdout}") from None


def model_labels(paths: list[Path]) -> list[str]:
    """A label per model for the table: the shortest end of its path that no other file's path
    ends with (setup_env.py names every file ggml-model-<type>.gguf, so the file name alone often
    tells nothing apart). The same file given twice gets the same label. bitnet-bench labels its
    -m files by the same rule."""
    parts = [Path(p).resolve().parts for p in paths]
    labels = []
    for mine in parts:
        others = [p for p in parts if p != mine]
        n = 1
        while n < len(mine) and any(p[-n:] == mine[-n:] for p in others):
            n += 1
        labels.append(str(Path(*mine[-n:])))
    return labels


def benchmark(models: list[Path], n_prompt: int, n_gen: int, threads: list[int], reps: int,
              batch_size: int = 512, progress=None, depths: list[int] | None = None,
              gen_after: list[tuple[int, int]] | None = None, cache_flags: list[str] | None = None) -> list[dict]:
    """Benchmark every model with prompt size ``n_prompt`` and generation length ``n_gen`` (0
    skips that test) at every thread count, ``reps`` interleaved runs each. ``depths``: run each
    test after a prompt of that many tokens already in the KV cache (bitnet-bench -d; default 0);
    ``gen_after``: (D, TG) pairs, TG tokens generated after a D-token prompt (-gp);
    ``cache_flags``: bitnet-bench's -ctk/-ctv/-fa flags and values (their lists give a row each).

    Returns one dict per (model, threads, test) in model order: model (see model_labels),
    model_index (which -m, from 0), path, size_bytes, n_params, type, isa, n_threads, test,
    samples_ts, avg_ts, stddev_ts, and ``vs_first`` (avg_ts over the first model's on the same
    threads and test; 1.0 for the first model, and a ratio for every other -m, the same file given
    again included).
    ``progress(text)`` is called before each run.
    """
    if n_prompt <= 0 and n_gen <= 0 and not gen_after:
        raise BitnetError("nothing to measure: -p and -n are both 0")
    for m in models:
        if not Path(m).is_file():
            raise BitnetError(f"model file {display_path(m)} not found: give a converted GGUF model with -m")
    tool = engine_tool("bitnet-bench")
    labels = model_labels(models)
    rows: dict[tuple, dict] = {}
    for rep in range(reps):
        for i, model in enumerate(models):
            if progress:
                progress(f"run {rep + 1}/{reps}: {display_path(model)}")
            cmd = [str(tool), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen),
                   "-t", ",".join(map(str, threads)), "-r", "1", "-b", str(batch_size), "-o", "json"]
            if depths:
                cmd += ["-d", ",".join(map(str, depths))]
            for d, tg in gen_after or []:
                cmd += ["-gp", f"{d},{tg}"]
            cmd += cache_flags or []
            for res in run_bench_json(cmd)["results"]:
                key = (i, res["kv"], res["n_threads"], res["n_depth"], res["test"])
                row = rows.setdefault(key, {
                    "model": labels[i], "model_index": i, "path": res["path"], "size_bytes": res["size_bytes"],
                    "n_params": res["n_params"], "type": res["type"], "isa": res["isa"], "kv": res["kv"],
                    "n_threads": res["n_threads"], "n_depth": res["n_depth"], "test": res["test"],
                    "samples_ts": []})
                row["samples_ts"].extend(res["samples_ts"])
    out = [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], k[2], k[3], _test_order(k[4])))]
    for row in out:
        s = row["samples_ts"]
        row["avg_ts"] = statistics.fmean(s)
        row["stddev_ts"] = statistics.stdev(s) if len(s) > 1 else 0.0
    first = {(r["kv"], r["n_threads"], r["test"]): r["avg_ts"] for r in out if r["model_index"] == 0}
    for row in out:
        base = first.get((row["kv"], row["n_threads"], row["test"]))
        row["vs_first"] = row["avg_ts"] / base if base else None
    return out


def _test_order(test: str) -> tuple:
    return (0 if test.startswith("pp") else 1, test)


def format_table(rows: list[dict]) -> str:
    """Markdown table of ``benchmark()`` rows (a "vs first" column when several -m ran, even the
    same file twice: then it measures the noise)."""
    several = len({r["model_index"] for r in rows}) > 1
    kv = len({r["kv"] for r in rows}) > 1 or any(r["kv"] != "f32" for r in rows)
    head = (["model", "size", "params", "type", "isa"] + (["kv"] if kv else []) + ["threads", "test", "t/s"]
            + (["vs first"] if several else []))
    lines = ["| " + " | ".join(head) + " |",
             "| --- | ---: | ---: | --- | --- |" + (" --- |" if kv else "") + " ---: | ---: | ---: |"
             + (" ---: |" if several else "")]
    for r in rows:
        size = (f"{r['size_bytes'] / 2**30:.2f} GiB" if r["size_bytes"] >= 2**30
                else f"{r['size_bytes'] / 2**20:.2f} MiB")
        params = f"{r['n_params'] / 1e9:.2f} B" if r["n_params"] >= 1e9 else f"{r['n_params'] / 1e6:.2f} M"
        cells = ([r["model"], size, params, r["type"], r["isa"]] + ([r["kv"]] if kv else [])
                 + [str(r["n_threads"]), r["test"], f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}"])
        if several:
            cells.append(f"{r['vs_first']:.2f}x" if r["vs_first"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _int_list(value: str, low: int, count: int | None = None) -> list[int]:
    try:
        out = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers") from None
    if any(v < low for v in out):
        raise click.BadParameter(f"'{value}': values must be >= {low}")
    if count is not None and len(out) != count:
        raise click.BadParameter(f"'{value}': expected {count} numbers")
    return out


def _thread_list(ctx, param, value: str) -> list[int]:
    try:
        threads = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers") from None
    if any(t < 1 for t in threads):
        raise click.BadParameter("thread counts must be >= 1")
    return threads


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", "models", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              required=True, help="GGUF model; repeat to compare several side by side.")
@click.option("-p", "--n-prompt", type=click.IntRange(min=0), default=512, show_default=True,
              help="Prompt tokens (pp test; 0 = skip).")
@click.option("-n", "--n-token", "n_gen", type=click.IntRange(min=0), default=128, show_default=True,
              help="Generated tokens (tg test; 0 = skip).")
@click.option("-t", "--threads", default="2", show_default=True, callback=_thread_list,
              help="Threads, or a comma-separated list of thread counts.")
@click.option("-r", "--repetitions", type=click.IntRange(min=1), default=5, show_default=True,
              help="Recorded runs per model and test, interleaved across models.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Tokens per forward pass for the prompt.")
@click.option("-d", "--n-depth", "depths", default="0", show_default=True, callback=lambda c, p, v: _int_list(v, 0),
              help="Run each test after a prompt of this many tokens in the KV cache (a comma-separated list).")
@click.option("-gp", "gen_after", multiple=True, callback=lambda c, p, v: [tuple(_int_list(x, 1, 2)) for x in v],
              metavar="D,TG", help="TG tokens generated after a D-token prompt; repeatable.")
@click.option("-ctk", "--cache-type-k", help="KV cache type(s) of the keys: f32, f16, q8_0 (comma-separated).")
@click.option("-ctv", "--cache-type-v", help="KV cache type(s) of the values.")
@click.option("-fa", "--flash-attn", help="on, off or on,off: tiled or exact attention.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
def main(models, n_prompt, n_gen, threads, repetitions, batch_size, depths, gen_after, cache_type_k,
         cache_type_v, flash_attn, as_json):
    """Prompt-processing and generation speed (tokens/s) of GGUF models with bitnet-bench."""
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:
        click.echo(("\r\x1b[K" if tty else "") + f"e2e_benchmark: {text}", err=True, nl=not tty)

    cache = [x for f, v in (("-ctk", cache_type_k), ("-ctv", cache_type_v), ("-fa", flash_attn)) if v for x in (f, v)]
    rows = benchmark(list(models), n_prompt, n_gen, threads, repetitions, batch_size, progress, depths,
                     gen_after, cache)
    if tty:
        click.echo("\r\x1b[K", err=True, nl=False)
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))


if __name__ == "__main__":
    run_cli(main)
