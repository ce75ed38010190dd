#!/usr/bin/env python3
"""Speculative decoding on real text: acceptance and speed of bitnet-cli's --spec on two tasks.

    python utils/spec_benchmark.py -m models/bitnet-tiny/ggml-model-i2_s.gguf -t 1
    python utils/spec_benchmark.py -m target.gguf --spec "-md draft.gguf" -n 96 -r 3

Tasks, from the documents of a text file (default: the shipped model's held-out set, documents
separated by blank lines): "copy" gives a document and then its first line again, so the
continuation can copy from the prompt (as when rewriting or continuing a docstring given in the
prompt); "free" gives only the document's first line. Each prompt runs greedily with --spec off
and with the speculation flags, side by side, -r times; the outputs must be identical (a
difference is an error). The table gives the acceptance rate, tokens per forward pass and the
median speed ratio. ``BITNET_BUILD_DIR`` overrides build/.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import DEFAULT_MODEL_DIR, BitnetError, engine_tool, run_cli

_SPEC = re.compile(r"speculation: (\d+) drafted, (\d+) accepted .*?, (\d+) forward passes")
_GEN = re.compile(r"generation:\s+(\d+) tokens in ([\d.]+) s")


def prompts(text: str, n_docs: int, max_chars: int = 500) -> dict[str, list[str]]:
    """The copy and free prompts of the first n_docs documents long enough to copy from."""
    docs = [d.strip() for d in text.split("\n\n") if len(d.strip()) > 200][:n_docs]
    docs = [d[:max_chars].rsplit("\n", 1)[0] if len(d) > max_chars else d for d in docs]
    return {"copy": [f"{d}\n\n{d.splitlines()[0]}\n" for d in docs], "free": [d.splitlines()[0] for d in docs]}


def run(model: Path, prompt: str, n: int, threads: int, flags: list[str]) -> tuple[str, float, tuple | None]:
    cmd = [str(engine_tool("bitnet-cli")), "-m", str(model), "-p", prompt, "-n", str(n), "-t", str(threads),
           "--temp", "0", "--ignore-eos", "--no-display-prompt", *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise BitnetError(f"bitnet-cli exited with code {r.returncode}: {r.stderr.strip()[-300:]}")
    g = _GEN.search(r.stderr)
    s = _SPEC.search(r.stderr)
    return r.stdout, float(g[2]), tuple(map(int, s.groups())) if s else None


def benchmark(model: Path, text: str, spec_flags: list[str], n: int, threads: int, reps: int,
              n_docs: int) -> list[dict]:
    rows = []
    for task, ps in prompts(text, n_docs).items():
        drafted = accepted = steps = 0
        ratios = []
        for p in ps:
            t_plain, t_spec = [], []
            for _ in range(reps):
                out0, t0, _ = run(model, p, n, threads, [])
                out1, t1, st = run(model, p, n, threads, spec_flags)
                if out0 != out1:
                    raise BitnetError(f"speculation changed the greedy output on {p[:40]!r}")
                t_plain.append(t0)
                t_spec.append(t1)
            drafted += st[0]
            accepted += st[1]
            steps += st[2]
            ratios.append(statistics.median(t_plain) / max(statistics.median(t_spec), 1e-9))
        rows.append({"task": task, "prompts": len(ps), "drafted": drafted, "accepted": accepted,
                     "acceptance": accepted / drafted if drafted else 0.0,
                     "tokens_per_pass": (steps + accepted) / steps if steps else 1.0,
                     "speedup": statistics.median(ratios)})
    return rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--text", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=DEFAULT_MODEL_DIR / "heldout.txt", show_default=True, help="Documents, blank-line separated.")
@click.option("--spec", "spec", default="--spec ngram", show_default=True,
              help="bitnet-cli's speculation flags, as one string.")
@click.option("-n", "--n-predict", type=click.IntRange(min=2), default=96, show_default=True)
@click.option("-t", "--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("-r", "--repetitions", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--docs", type=click.IntRange(min=1), default=8, show_default=True, help="Documents per task.")
def main(model, text, spec, n_predict, threads, repetitions, docs):
    """Acceptance and speed of speculative decoding on copy and free-generation prompts."""
    rows = benchmark(model, text.read_text(), spec.split(), n_predict, threads, repetitions, docs)
    click.echo(f"{model.name}, {spec}, -n {n_predict}, -t {threads}, medians of {repetitions} runs\n")
    click.echo("| task | prompts | drafted | accepted | acceptance | tokens per pass | tg vs plain |")
    click.echo("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        click.echo(f"| {r['task']} | {r['prompts']} | {r['drafted']} | {r['accepted']} | {100 * r['acceptance']:.1f}% "
                   f"| {r['tokens_per_pass']:.2f} | {r['speedup']:.3f} |")


if __name__ == "__main__":
    run_cli(main)
