"""Shared code of utils/codegen_tl1.py and codegen_tl2.py: per-shape TL kernels for one model.

The TL kernels (src/kernels/x86/tl_*.cpp) are templates over two tiles: BM, the rows one pass
over a group block covers (a multiple of the 64-row layout block), and BK, the K values summed in
int16 before widening (TL1: a multiple of 2 up to 254; TL2: a multiple of 6, whole units of two
triples, up to 252; so no int16 overflow). The generated include/bitnet-lut-kernels.h lists, per matrix shape (M, K) of the model, the tiles to
instantiate (the X-macro BITNET_TL_SHAPES); the engine uses those kernels for those shapes and
the generic ones for any other. include/kernel_config.ini records the same table in bitnet.cpp's
format (sections with m, k, bm = BM, bk = BK, bmm = the 64-row block).

The tiles change the speed only, never the results or the file layout: a TL GGUF runs on any
build, with or without the header (the layout's only tile, the 64-row block, is fixed; `--bm`
exists to say so when asked for another). Both files are stamped with the generating command and
are never edited by hand.

The header is a function of the config alone (whose [Codegen] section names the type): when the
config or this generator is newer than the header, the build (CMakeLists.txt) writes the header
again with `python -m bitnet.codegen.tl --config include/kernel_config.ini --header ...`.
"""

from __future__ import annotations

import configparser
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from bitnet.common import REPO_ROOT, display_path, read_json, run_cli
from bitnet.formats.tl_pack import TL_BM

HEADER = REPO_ROOT / "include" / "bitnet-lut-kernels.h"
CONFIG = REPO_ROOT / "include" / "kernel_config.ini"
PRESETS = REPO_ROOT / "preset_kernels"
LINEAR_NAMES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
HF_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
GROUP = {"tl1": 2, "tl2": 3}  # K values per table group
MAX_BK = {"tl1": 254, "tl2": 252}  # most K values one int16 sum may cover (|entry| 256 / 384)
BK_STEP = {"tl1": 2, "tl2": 6}  # BK is whole pairs (TL1) or whole units of two triples (TL2)


@dataclass(frozen=True)
class Tiles:
    M: int
    K: int
    BM: int  # rows per tile
    BK: int  # K values per int16 block (a multiple of the group)


def model_shapes(source: Path) -> list[tuple[int, int]]:
    """The distinct (M, K) of the ternary linears of a GGUF file or a Hugging Face checkpoint
    (its directory or config.json), in first-use order."""
    source = Path(source)
    if source.suffix == ".gguf":
        from bitnet.formats.gguf_reader import read_gguf

        try:
            tensors = read_gguf(source).tensors
        except (ValueError, KeyError, OSError) as e:
            raise click.ClickException(f"cannot read {source}: {e}") from None
        shapes = [(t.ne[1], t.ne[0]) for name, t in tensors.items()
                  if len(t.ne) == 2 and name.split(".")[-2] in LINEAR_NAMES]
    else:
        from bitnet.convert.hf import Hparams

        config = source / "config.json" if source.is_dir() else source
        if not config.is_file():
            raise click.ClickException(f"{source}: neither a .gguf file nor a checkpoint with a config.json")
        hp = Hparams(read_json(config))
        shapes = [hp.linear_shape(s) for s in HF_LINEARS]
    if not shapes:
        raise click.ClickException(f"{source} has no ternary linear layers (blk.N.attn_q.weight, ...)")
    return list(dict.fromkeys(shapes))


def _per_shape(values: str | None, n: int, flag: str, default: int) -> list[int]:
    """A comma-separated list with one value per shape, or one value for all."""
    if values is None:
        return [default] * n
    try:
        items = [int(v) for v in values.split(",")]
    except ValueError:
        raise click.ClickException(f"{flag} must be integers separated by commas, got {values!r}") from None
    if len(items) == 1:
        return items * n
    if len(items) != n:
        raise click.ClickException(f"{flag} has {len(items)} values for {n} shapes: give one per shape or one for all")
    return items


def validate(qtype: str, tiles: list[Tiles]) -> None:
    """Raise click.ClickException naming the first tile that breaks a constraint."""
    g = GROUP[qtype]
    for t in tiles:
        where = f"shape M={t.M} K={t.K}"
        if qtype == "tl1" and t.K % 2:
            raise click.ClickException(f"{where}: TL1 needs an even K; use tl2 or i2_s for this model")
        if t.M % TL_BM:
            raise click.ClickException(f"{where}: M is not a multiple of {TL_BM}, the TL row block; use i2_s")
        if t.BM <= 0 or t.BM % TL_BM or t.BM > t.M:
            raise click.ClickException(f"{where}: BM={t.BM} must be a multiple of {TL_BM} and at most M")
        if t.BK <= 0 or t.BK % BK_STEP[qtype] or t.BK > MAX_BK[qtype]:
            raise click.ClickException(f"{where}: BK={t.BK} must be a multiple of {BK_STEP[qtype]} and at most "
                                       f"{MAX_BK[qtype]} (larger int16 sums could overflow)")


def tiles_from_flags(qtype: str, shapes: list[tuple[int, int]], BM: str | None, BK: str | None,
                     bm: str | None) -> list[Tiles]:
    if any(v != TL_BM for v in _per_shape(bm, len(shapes), "--bm", TL_BM)):
        raise click.ClickException(f"--bm: the TL layout's row block is fixed at {TL_BM} (src/kernels/tl.h); "
                                   "BM and BK are the tiles that can be tuned")
    bms = _per_shape(BM, len(shapes), "--BM", 256)
    bks = _per_shape(BK, len(shapes), "--BK", 64 * GROUP[qtype])
    return [Tiles(M, K, min(b, M), k) for (M, K), b, k in zip(shapes, bms, bks)]


def read_config(path: Path) -> list[Tiles]:
    """Tiles from a kernel_config.ini (a preset, or the tuner's result)."""
    cp = configparser.ConfigParser()
    try:
        if not cp.read(path):
            raise click.ClickException(f"cannot read the kernel config {path}")
        return [Tiles(cp.getint(s, "m"), cp.getint(s, "k"), cp.getint(s, "bm"), cp.getint(s, "bk"))
                for s in cp.sections() if s.startswith("Kernels_")]
    except (configparser.Error, ValueError) as e:
        raise click.ClickException(f"{path}: not a kernel config ({e})") from None


def command_line() -> str:
    """This process's command line, for the stamp of what it writes."""
    return shlex.join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def _codegen_command(qtype: str, options: list[tuple[str, object]]) -> str:
    """The codegen command line that gives these options (those not None)."""
    args = [a for flag, value in options if value is not None for a in (flag, str(value))]
    return shlex.join(["python", f"utils/codegen_{qtype}.py", *args])


def render_header(qtype: str, tiles: list[Tiles], stamp: str) -> str:
    g = GROUP[qtype]
    rows = "".join(f"    X({qtype[-1]}, {t.M}, {t.K}, {t.BM}, {t.BK // g}) /* BK = {t.BK} values */ \\\n"
                   for t in tiles)
    return (
        f"// {qtype.upper()} kernels specialized per matrix shape. GENERATED by utils/codegen_{qtype}.py: do not\n"
        f"// edit; run it again (then rebuild) to change the tiles, or delete this file for the generic\n"
        f"// kernels only.\n"
        f"//   {stamp}\n"
        f"#pragma once\n\n"
        f"// The TL layout's row block these kernels read (src/kernels/tl.h TL_BM).\n"
        f"#define BITNET_TL_ROW_BLOCK {TL_BM}\n\n"
        f"// X(type 1|2, M, K, BM rows per tile, BK groups per int16 sum)\n"
        f"#define BITNET_TL_SHAPES(X) \\\n{rows}\n"
    )


def render_config(tiles: list[Tiles], stamp: str, qtype: str | None = None) -> str:
    """bitnet.cpp's kernel_config.ini format; with qtype, a [Codegen] section naming the type (what
    the build needs to write the header again from this file alone)."""
    out = [f"; GENERATED: {stamp}\n"]
    if qtype:
        out.append(f"\n[Codegen]\ntype = {qtype}\n")
    for i, t in enumerate(tiles):
        out.append(f"\n[Kernels_{i}]\nm = {t.M}\nk = {t.K}\nbm = {t.BM}\nbk = {t.BK}\nbmm = {TL_BM}\n")
    return "".join(out)


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader (the compiler) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write(qtype: str, tiles: list[Tiles], header: Path = HEADER, config: Path = CONFIG,
          stamp: str | None = None) -> None:
    """Validate the tiles and write the kernel config, then the header (in that order, so that the
    header is the newer and the build sees nothing to regenerate)."""
    validate(qtype, tiles)
    stamp = stamp or command_line()
    _write_atomic(config, render_config(tiles, stamp, qtype))
    _write_atomic(header, render_header(qtype, tiles, stamp))


def regenerate(config: Path, header: Path) -> None:
    """Write the header again from a kernel config written by write() (what the build runs)."""
    cp = configparser.ConfigParser()
    try:
        cp.read(config)
        qtype = cp.get("Codegen", "type")
    except (configparser.Error, OSError):
        raise click.ClickException(f"{config} has no [Codegen] type: it was not written by this project's "
                                   "codegen; run utils/codegen_tl1.py or utils/codegen_tl2.py again") from None
    if qtype not in GROUP:
        raise click.ClickException(f"{config}: [Codegen] type = {qtype}, expected tl1 or tl2")
    tiles = read_config(config)
    validate(qtype, tiles)
    first = config.read_text().split("\n", 1)[0].removeprefix("; GENERATED: ")
    _write_atomic(header, render_header(qtype, tiles, f"rewritten by the build from {display_path(config)}, "
                                                      f"which was written by: {first}"))


def run(qtype: str, model: Path | None, BM: str | None, BK: str | None, bm: str | None,
        preset: Path | None, header: Path, config: Path) -> None:
    """The common body of both command lines."""
    if preset:
        if BM or BK or bm:
            raise click.UsageError("--preset gives the tiles: drop --BM/--BK/--bm")
        tiles = read_config(preset)
        if model:
            missing = set(model_shapes(model)) - {(t.M, t.K) for t in tiles}
            if missing:
                click.echo(f"note: {preset} has no tiles for {sorted(missing)}: those run the generic kernels",
                           err=True)
    else:
        if not model:
            raise click.UsageError("give --model (a GGUF file or a checkpoint) or --preset")
        tiles = tiles_from_flags(qtype, model_shapes(model), BM, BK, bm)
    stamp = _codegen_command(qtype, [("--model", model), ("--BM", BM), ("--BK", BK), ("--bm", bm),
                                      ("--preset", preset), ("--header", None if header == HEADER else header),
                                      ("--config", None if config == CONFIG else config)])
    write(qtype, tiles, header, config, stamp)
    click.echo(f"wrote {header} and {config}: {len(tiles)} {qtype.upper()} shapes")
    for t in tiles:
        click.echo(f"  M={t.M:<6} K={t.K:<6} BM={t.BM:<5} BK={t.BK}")
    click.echo("rebuild the engine to use them (cmake --build build)")


def main_command(qtype: str):
    """The click command of codegen_<qtype>.py."""

    @click.command(help=f"Generate {qtype.upper()} kernels specialized for a model's matrix shapes "
                        f"(include/bitnet-lut-kernels.h and include/kernel_config.ini).")
    @click.option("--model", "-m", type=click.Path(exists=True, path_type=Path),
                  help="A GGUF file or a Hugging Face checkpoint directory (or its config.json).")
    @click.option("--BM", "BM", metavar="LIST", help="Rows per tile, one per shape or one for all (multiples of 64, capped at M).")
    @click.option("--BK", "BK", metavar="LIST",
                  help=f"K values per int16 block, one per shape or one for all (multiples of {BK_STEP[qtype]}, "
                       f"at most {MAX_BK[qtype]}).")
    @click.option("--bm", "bm", metavar="LIST", help=f"The layout's row block: only {TL_BM}.")
    @click.option("--preset", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Take the tiles from a kernel_config.ini (preset_kernels/<model>/, or tune_kernels.py's).")
    @click.option("--header", type=click.Path(dir_okay=False, path_type=Path), default=HEADER, show_default=True)
    @click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=CONFIG, show_default=True)
    def main(model, BM, BK, bm, preset, header, config):
        run(qtype, model, BM, BK, bm, preset, header, config)

    return main


@click.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=CONFIG,
              show_default=True, help="The kernel config written by codegen_tl1.py / codegen_tl2.py.")
@click.option("--header", type=click.Path(dir_okay=False, path_type=Path), default=HEADER, show_default=True)
def regenerate_command(config: Path, header: Path) -> None:
    """Write the TL kernel header again from its kernel config (the build runs this)."""
    regenerate(config, header)


if __name__ == "__main__":
    run_cli(regenerate_command)
