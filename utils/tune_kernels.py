"""Tune the TL1/TL2 kernel tiles for a model on this machine, and write the best as a preset.

    python utils/tune_kernels.py --model models/BitNet-b1.58-2B-4T -q tl2
    python utils/codegen_tl2.py --preset preset_kernels/BitNet-b1.58-2B-4T/kernel_config_tl2.ini

For every candidate (BM, BK) pair (every shape of the model gets it), the tuner generates a
kernel header, builds the engine's test_tl in its own build directory with that header (under a
name a generated include/bitnet-lut-kernels.h cannot shadow), and times each shape's kernel
(`test_tl --tune N`, on the ISA the engine picks: the best of repeated passes over copies of the
matrix that together exceed the caches, since the engine streams its weights from memory). It prints the table of
times and writes, per shape, the fastest tiles as a kernel_config.ini that codegen_tl1.py /
codegen_tl2.py take with --preset. The tiles never change results, only speed.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.codegen.tl import (  # noqa: E402
    PRESETS,
    Tiles,
    command_line,
    model_shapes,
    render_config,
    render_header,
    validate,
)
from bitnet.common import build_dir, display_path, run_cli  # noqa: E402
from bitnet.formats.tl_pack import TL_BM  # noqa: E402

DEFAULT_BM = "64,128,256,512"
DEFAULT_BK = {"tl1": "64,128,254", "tl2": "48,96,192,252"}


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise click.ClickException(f"{flag} must be integers separated by commas, got {text!r}") from None


def candidate_tiles(qtype: str, shapes: list[tuple[int, int]], bm: int, bk: int) -> list[Tiles]:
    """The tiles of one candidate for every shape: BM capped at the largest multiple of 64 <= M."""
    return [Tiles(M, K, min(bm, M // TL_BM * TL_BM), bk) for M, K in shapes]


def measure(qtype: str, tiles: list[Tiles], bdir: Path, tokens: int, log_dir: Path) -> dict[tuple[int, int], float]:
    """Build test_tl with these tiles and return seconds per (M, K)."""
    from bitnet.build import build_engine

    gen = bdir / "tune-include"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "bitnet-lut-kernels-tune.h").write_text(render_header(qtype, tiles, "tune_kernels.py candidate"))
    bin_dir = build_engine(bdir, log_dir, jobs=2, log_name="tune-build.log", cmake_args=[
        "-DBITNET_BUILD_TESTS=ON", f"-DCMAKE_CXX_FLAGS=-I{gen} -DBITNET_TL_TUNE_HEADER=1"])
    r = subprocess.run([str(bin_dir / "test_tl"), "--tune", str(tokens)], check=False, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise click.ClickException(f"test_tl --tune failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    times = {}
    for line in r.stdout.split("\n"):
        if line.strip():
            _, m, k, _, sec = line.split()
            times[(int(m), int(k))] = float(sec)
    return times


def print_table(qtype: str, shapes, cands, results) -> None:
    head = f"{'M':>6} {'K':>6} | " + " ".join(f"{f'{bm}/{bk}':>9}" for bm, bk in cands)
    click.echo(f"\n{qtype.upper()} time per call in µs, columns BM/BK (* = fastest):\n{head}\n{'-' * len(head)}")
    for shape in shapes:
        row = [results[c].get(shape) for c in cands]
        best = min(v for v in row if v is not None)
        cells = " ".join(f"{v * 1e6:8.1f}{'*' if v == best else ' '}" for v in row)
        click.echo(f"{shape[0]:>6} {shape[1]:>6} | {cells}")


@click.command()
@click.option("--model", "-m", required=True, type=click.Path(exists=True, path_type=Path),
              help="A GGUF file or a Hugging Face checkpoint directory (or its config.json).")
@click.option("--quant-type", "-q", "qtype", type=click.Choice(["tl1", "tl2"]), default="tl2", show_default=True)
@click.option("--BM", "bm_list", default=DEFAULT_BM, show_default=True, help="Candidate rows per tile.")
@click.option("--BK", "bk_list", default=None, help="Candidate K values per int16 block "
              f"[default: {DEFAULT_BK['tl1']} for tl1, {DEFAULT_BK['tl2']} for tl2].")
@click.option("--tokens", "-n", default=1, show_default=True, type=click.IntRange(1, 512),
              help="Tokens per call: 1 tunes generation, 128 prompt processing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the preset goes [default: preset_kernels/<model name>/kernel_config_<q>.ini].")
@click.option("--build-dir", "bdir", type=click.Path(file_okay=False, path_type=Path),
              help="Build directory of the candidates [default: <build dir>-tune].")
def main(model, qtype, bm_list, bk_list, tokens, out, bdir):
    """Benchmark candidate TL tiles per matrix shape of MODEL and write the fastest as a preset."""
    shapes = model_shapes(model)
    cands = list(itertools.product(_ints(bm_list, "--BM"), _ints(bk_list or DEFAULT_BK[qtype], "--BK")))
    for bm, bk in cands:
        validate(qtype, candidate_tiles(qtype, shapes, bm, bk))
    name = (model.parent if model.suffix in (".gguf", ".json") else model).resolve().name
    out = out or PRESETS / name / f"kernel_config_{qtype}.ini"
    bdir = bdir or build_dir().with_name(build_dir().name + "-tune")
    log_dir = bdir / "logs"
    click.echo(f"tuning {qtype.upper()} for {len(shapes)} shapes of {name}: {len(cands)} candidates, "
               f"{tokens} token(s) a call (build log: {display_path(log_dir / 'tune-build.log')})")
    results = {}
    for i, (bm, bk) in enumerate(cands, 1):
        click.echo(f"[{i}/{len(cands)}] BM={bm} BK={bk}: building and timing ...", nl=False)
        results[(bm, bk)] = measure(qtype, candidate_tiles(qtype, shapes, bm, bk), bdir, tokens, log_dir)
        total = sum(results[(bm, bk)].values())
        click.echo(f" {total * 1e6:.0f} µs for one call of each shape")
    print_table(qtype, shapes, cands, results)
    best = []
    for M, K in shapes:
        bm, bk = min(cands, key=lambda c: results[c].get((M, K), float("inf")))
        best.append(candidate_tiles(qtype, [(M, K)], bm, bk)[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_config(best, f"{command_line()}  ({tokens} token(s) a call, BK in K values)"))
    click.echo(f"\nwrote {display_path(out)}; use it with:\n  python utils/codegen_{qtype}.py --preset {display_path(out)}")


if __name__ == "__main__":
    run_cli(main)
