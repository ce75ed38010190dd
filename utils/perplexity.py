#!/usr/bin/env python3
"""Perplexity of a converted BitNet model on a text file, with the engine's bitnet-perplexity.

    python utils/perplexity.py                                    # shipped model on its held-out text
    python utils/perplexity.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -f wiki.test.raw -t 4

The protocol is llama-perplexity's (see src/tools/perplexity.cpp): chunks of -c tokens, each
evaluated from an empty cache with BOS first, scoring the second half of each chunk. The tool's
output streams straight to this terminal (running estimates and the final line on stdout, speed on
stderr); the exit code is the tool's. ``BITNET_BUILD_DIR`` overrides build/.

``perplexity()`` runs the same command quietly and returns (PPL, +/-): that is what tests call.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import DEFAULT_MODEL, DEFAULT_MODEL_DIR, BitnetError, display_path, engine_tool, run_cli, run_tool

DEFAULT_TEXT = DEFAULT_MODEL_DIR / "heldout.txt"

# The tool's last line: "Final estimate: PPL = 12.3456 +/- 0.12345" (inf/nan when the model
# assigns a scored token zero probability).
_FINAL = re.compile(r"^Final estimate: PPL = (\S+) \+/- (\S+)$", re.MULTILINE)


def perplexity_command(model: Path, text_file: Path, ctx_size: int = 0, threads: int = 2,
                       batch_size: int = 512, chunks: int | None = None,
                       cache_flags: Sequence[str] = (), use_mmap: bool = True) -> list[str]:
    """The bitnet-perplexity command line for these settings (``ctx_size`` 0: the model's training
    context, at most 4096; ``chunks`` None: all; ``cache_flags``: its -ctk/-ctv/-fa flags and
    values, as given; ``use_mmap`` False: --no-mmap). Raise ``BitnetError`` when the engine is not
    built or an input file does not exist."""
    tool = engine_tool("bitnet-perplexity")
    if not Path(model).is_file():
        raise BitnetError(f"model file {display_path(model)} not found: run python setup_env.py "
                          "(or give a converted model with -m MODEL.gguf)")
    if not Path(text_file).is_file():
        raise BitnetError(f"text file {display_path(text_file)} not found: give the text to score with -f FILE")
    cmd = [str(tool), "-m", str(model), "-f", str(text_file), "-c", str(ctx_size), "-t", str(threads),
           "-b", str(batch_size)]
    if chunks is not None:
        cmd += ["--chunks", str(chunks)]
    if not use_mmap:
        cmd.append("--no-mmap")
    return cmd + list(cache_flags)


def parse_final(output: str) -> tuple[float, float]:
    """(PPL, +/-) from bitnet-perplexity's stdout. Raise ``BitnetError`` when the final line is
    missing (the tool did not finish)."""
    m = _FINAL.search(output)
    if not m:
        raise BitnetError("bitnet-perplexity printed no 'Final estimate' line; its output was:\n" + output)
    return float(m.group(1)), float(m.group(2))


def perplexity(model: Path, text_file: Path, ctx_size: int = 0, threads: int = 2,
               batch_size: int = 512, chunks: int | None = None,
               cache_flags: Sequence[str] = ()) -> tuple[float, float]:
    """Run bitnet-perplexity quietly and return (PPL, +/-). A failure of the tool (bad file, text
    too short for one chunk, ...) is a ``BitnetError`` carrying the tool's one-line message."""
    cmd = perplexity_command(model, text_file, ctx_size, threads, batch_size, chunks, cache_flags)
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        msg = lines[-1] if lines else f"bitnet-perplexity exited with code {r.returncode}"
        raise BitnetError(msg.removeprefix("error: "))
    return parse_final(r.stdout)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL,
              show_default="the shipped model's ggml-model-i2_s.gguf", help="GGUF model file.")
@click.option("-f", "--file", "text_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Text file to score  [default: the shipped model's heldout.txt]")
@click.option("-c", "--ctx-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Tokens per chunk (0: the model's training context, at most 4096; a larger one is warned "
                   "about). llama-perplexity's usual 512 suits models trained on 512 tokens or more.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Tokens per forward pass.")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Number of CPU threads.")
@click.option("--chunks", type=click.IntRange(min=1), default=None,
              help="Score at most this many chunks  [default: all]")
@click.option("-ctk", "--cache-type-k", type=click.Choice(["f32", "f16", "q8_0"]),
              help="KV cache type of the keys  [default: f32]")
@click.option("-ctv", "--cache-type-v", type=click.Choice(["f32", "f16", "q8_0"]),
              help="KV cache type of the values  [default: f32]")
@click.option("-fa", "--flash-attn", type=click.Choice(["on", "off"]),
              help="on: tiled attention; off: the exact attention (needs f32 K and V)  [default: on]")
@click.option("--mmap/--no-mmap", "use_mmap", default=True, show_default=True,
              help="Map the model file (a fast start) or read it into memory.")
@click.option("--kl-divergence-base", "kld_base", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With -f: also write the tokens and each scored position's log-probabilities to this file; "
                   "with --kl-divergence: the base to compare with.")
@click.option("--kl-divergence", "kld", is_flag=True,
              help="KL divergence and top-token agreement of -m against --kl-divergence-base (no -f).")
@click.option("--hellaswag", is_flag=True, help="-f is a HellaSwag task file (6 lines per task): accuracy.")
@click.option("--hellaswag-tasks", type=click.IntRange(min=1), default=None,
              help="Score the first N HellaSwag tasks only  [default: all]")
def main(model: Path, text_file: Path | None, ctx_size: int, batch_size: int, threads: int,
         chunks: int | None, cache_type_k: str | None, cache_type_v: str | None, flash_attn: str | None,
         use_mmap: bool, kld_base: Path | None, kld: bool, hellaswag: bool, hellaswag_tasks: int | None) -> int:
    """Perplexity of a converted BitNet model on a text file (llama-perplexity's protocol), or its
    KL divergence against a base file of another (--kl-divergence), or HellaSwag accuracy."""
    cache_flags = [x for f, v in (("-ctk", cache_type_k), ("-ctv", cache_type_v), ("-fa", flash_attn)) if v
                   for x in (f, v)]
    mode_flags = [*(["--kl-divergence-base", str(kld_base)] if kld_base else []),
                  *(["--hellaswag"] if hellaswag else []),
                  *(["--hellaswag-tasks", str(hellaswag_tasks)] if hellaswag_tasks else [])]
    if kld:
        if kld_base is None:
            raise BitnetError("--kl-divergence needs the base file: give --kl-divergence-base FILE")
        if text_file is not None:
            raise BitnetError("--kl-divergence scores the tokens stored in the base file: leave out -f")
        if not Path(model).is_file():
            raise BitnetError(f"model file {display_path(model)} not found")
        cmd = [str(engine_tool("bitnet-perplexity")), "-m", str(model), "-t", str(threads), "-b", str(batch_size),
               "--kl-divergence", *mode_flags, *(["--chunks", str(chunks)] if chunks else []),
               *([] if use_mmap else ["--no-mmap"]), *cache_flags, *(["-c", str(ctx_size)] if ctx_size else [])]
        return run_tool(cmd, "bitnet-perplexity")
    if text_file is None:
        if not DEFAULT_TEXT.is_file():
            raise BitnetError(f"no text file given and the shipped model has none ({display_path(DEFAULT_TEXT)}): "
                              "give the text to score with -f FILE")
        text_file = DEFAULT_TEXT
    cmd = perplexity_command(model, text_file, ctx_size, threads, batch_size, chunks, cache_flags, use_mmap)
    cmd += mode_flags
    return run_tool(cmd, "bitnet-perplexity")


if __name__ == "__main__":
    run_cli(main)
