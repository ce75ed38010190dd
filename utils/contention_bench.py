"""How the engine's speed holds up when other processes compete for the CPU: bitnet-bench run with
-t 1 and -t 2 (or any list) while N busy-loop processes spin, for N in --busy (default 0,1,2).

    python utils/contention_bench.py -m models/bitnet-tiny/ggml-model-i2_s.gguf
    python utils/contention_bench.py -m MODEL.gguf --bin build/bin --bin /old/bin --rounds 5

A benchmark, not a test. With several --bin directories (an old build beside a new one) the runs
alternate between them round by round, so the machine's drift hits both alike; each cell is the
median over rounds of bitnet-bench's mean tokens/s. The busy processes are forked children that
spin until they are killed at the end of their measurement.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import subprocess
import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import build_dir, run_cli  # noqa: E402


def _spin() -> None:
    while True:
        pass


class BusyLoad:
    """n spinning child processes for the duration of a with block."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[mp.Process] = []

    def __enter__(self) -> BusyLoad:
        for _ in range(self.n):
            p = mp.Process(target=_spin, daemon=True)
            p.start()
            self.procs.append(p)
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.join()


def bench_once(bin_dir: Path, model: Path, threads: list[int], n_prompt: int, n_gen: int, reps: int) -> dict:
    """{(threads, test): mean t/s} of one bitnet-bench run."""
    cmd = [str(bin_dir / "bitnet-bench"), "-m", str(model), "-t", ",".join(map(str, threads)), "-p", str(n_prompt),
           "-n", str(n_gen), "-r", str(reps), "-o", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    results = out["results"] if isinstance(out, dict) else out
    return {(x["n_threads"], x["test"]): x["avg_ts"] for x in results}


def contention_table(model: Path, bins: list[Path], threads: list[int], busy: list[int], n_prompt: int, n_gen: int,
                     reps: int, rounds: int) -> list[dict]:
    """Rows {bin, busy, threads, test, median_ts, samples}, alternating bins within each round."""
    samples: dict[tuple, list[float]] = {}
    for rnd in range(rounds):
        for b in busy:
            order = bins if rnd % 2 == 0 else bins[::-1]
            for bin_dir in order:
                with BusyLoad(b):
                    got = bench_once(bin_dir, model, threads, n_prompt, n_gen, reps)
                for (t, test), ts in got.items():
                    samples.setdefault((str(bin_dir), b, t, test), []).append(ts)
                    click.echo(f"round {rnd + 1}/{rounds}: {bin_dir} busy {b} -t {t} {test}: {ts:.2f} t/s", err=True)
    return [{"bin": k[0], "busy": k[1], "threads": k[2], "test": k[3], "median_ts": statistics.median(v),
             "samples": v} for k, v in samples.items()]


@click.command()
@click.option("-m", "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--bin", "bins", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
              help="Directory with bitnet-bench; repeatable to compare builds [default: the build's bin/].")
@click.option("-t", "--threads", default="1,2", show_default=True, help="Thread counts.")
@click.option("--busy", default="0,1,2", show_default=True, help="Busy-loop process counts.")
@click.option("-p", "--n-prompt", default=64, show_default=True)
@click.option("-n", "--n-gen", default=16, show_default=True)
@click.option("-r", "--reps", default=2, show_default=True, help="Repetitions per bitnet-bench run.")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds; cells are medians over them.")
def main(model, bins, threads, busy, n_prompt, n_gen, reps, rounds):
    bins = list(bins) or [build_dir() / "bin"]
    rows = contention_table(model, bins, [int(x) for x in threads.split(",")], [int(x) for x in busy.split(",")],
                            n_prompt, n_gen, reps, rounds)
    click.echo(f"model: {model.name}, medians of {rounds} round(s), t/s")
    click.echo("| bin | busy | threads | test | t/s |")
    click.echo("| --- | ---: | ---: | --- | ---: |")
    for r in sorted(rows, key=lambda r: (r["test"], r["busy"], r["threads"], r["bin"])):
        click.echo(f"| {r['bin']} | {r['busy']} | {r['threads']} | {r['test']} | {r['median_ts']:.2f} |")


if __name__ == "__main__":
    run_cli(main)
