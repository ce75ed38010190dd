"""Certified output against the exact and the uncertified output matrix: generation speed and
rescored rows per token, side by side.

    python utils/output_bench.py --exact F16.gguf [--quantized Q6K.gguf] [-n 32] [--rounds 5] [-t 2]

Configurations: the F16-output file with its exact output (BITNET_OUTPUT_COMPACT=off), the same
file certified through a compact copy made at load time (one per --compact type), and, with
--quantized, a file whose output matrix is itself quantized (uncertified). Each round runs every
configuration once (bitnet-bench, tg only), so a loaded machine slows them alike; the table gives
medians over rounds. Rescored rows per token come from a greedy run of the same length through
the bindings, on a seeded random prompt.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import build_dir, run_cli  # noqa: E402


def _tg(bench: Path, gguf: Path, compact: str, n: int, threads: int) -> tuple[float, float]:
    """(tokens/s of one tg run, seconds the whole bench process took: load included)."""
    env = dict(os.environ, BITNET_OUTPUT_COMPACT=compact)
    t0 = time.perf_counter()
    out = subprocess.run([str(bench), "-m", str(gguf), "-p", "0", "-n", str(n), "-r", "1", "-t", str(threads),
                          "-o", "json"], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"][0]["avg_ts"], time.perf_counter() - t0


def _rescored(gguf: Path, compact: str, n: int, threads: int) -> tuple[float, int, int]:
    """(mean, median, max) rows rescored per generated token, greedy from a seeded prompt."""
    import numpy as np

    os.environ["BITNET_OUTPUT_COMPACT"] = compact
    from bitnet.bindings import Context, Model

    m = Model(gguf)
    ctx = Context(m, n_ctx=256, n_threads=threads)
    tok = [int(t) for t in np.random.default_rng(0).integers(0, m.n_vocab, 16)]
    logits = ctx.decode(tok)
    per = []
    for _ in range(n):
        before = ctx.output_stats()[1]
        logits = ctx.decode([int(np.argmax(logits[-1]))])
        per.append(ctx.output_stats()[1] - before)
    ctx.close()
    m.close()
    return statistics.mean(per), int(statistics.median(per)), max(per)


@click.command()
@click.option("--exact", "exact_gguf", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file whose output matrix is F16 (or F32).")
@click.option("--quantized", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The same model with a quantized output matrix (uncertified).")
@click.option("--compact", default="q6_k,q4_0", show_default=True, help="Compact types to certify through.")
@click.option("-n", "--n-gen", default=32, show_default=True, help="Tokens per tg run.")
@click.option("--rounds", default=5, show_default=True, help="Rounds (each runs every configuration once).")
@click.option("-t", "--threads", default=2, show_default=True)
def main(exact_gguf, quantized, compact, n_gen, rounds, threads):
    bench = build_dir() / "bin" / "bitnet-bench"
    configs = [("f16 exact", exact_gguf, "off")]
    configs += [(f"certified {c.upper()}", exact_gguf, c) for c in compact.split(",") if c]
    if quantized:
        configs.append(("uncertified (file's own)", quantized, "off"))
    tg = {name: [] for name, _, _ in configs}
    wall = {name: [] for name, _, _ in configs}
    for r in range(rounds):
        for name, gguf, c in configs:
            ts, secs = _tg(bench, gguf, c, n_gen, threads)
            tg[name].append(ts)
            wall[name].append(secs)
        click.echo(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in tg.items()), err=True)
    base = statistics.median(tg[configs[0][0]])
    click.echo(f"| output | tg{n_gen} t/s (median of {rounds}) | vs f16 | bench process s (load incl.) "
               "| rescored rows/token mean / median / max |")
    click.echo("|---|---|---|---|---|")
    for name, gguf, c in configs:
        med = statistics.median(tg[name])
        resc = "-"
        if c != "off":
            mean, medr, mx = _rescored(gguf, c, n_gen, threads)
            resc = f"{mean:.1f} / {medr} / {mx}"
        click.echo(f"| {name} | {med:.2f} | {med / base:.3f}x | {statistics.median(wall[name]):.1f} | {resc} |")


if __name__ == "__main__":
    run_cli(main)
