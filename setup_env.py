#!/usr/bin/env python3
"""Set up bitnet: get a model, build the engine, convert the model to GGUF.

    python setup_env.py                                   # the small model that ships in models/
    python setup_env.py --hf-repo microsoft/BitNet-b1.58-2B-4T -q i2_s
    python setup_env.py --hf-repo microsoft/BitNet-b1.58-2B-4T-gguf  # bitnet.cpp's ready GGUF
    python setup_env.py --model-dir path/to/checkpoint    # a checkpoint already on disk
    python setup_env.py --hf-repo microsoft/BitNet-b1.58-2B-4T -q tl2 --use-pretuned

Three steps, each skipped when already done: (1) download the checkpoint into models/<name> (or
check the one given), (2) configure and build the engine with CMake + Ninja (log in --log-dir),
(3) convert it to <model dir>/ggml-model-<quant type>.gguf, unless that file is newer than the
checkpoint and the converter and was written with the same embedding type. --hf-repo takes the
Hugging Face ids of bitnet.cpp's model list (bitnet/hub.py KNOWN_MODELS) and refuses others with
the list; a GGUF repository's file is used as it comes, without conversion. It ends by printing
the command that runs the model. The work is done by the bitnet package (bitnet/hub.py, bitnet/build.py,
bitnet/convert/hf.py); this file only parses flags and reports progress.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bitnet.common import DEFAULT_MODEL_DIR, DEFAULT_PROMPT, REPO_ROOT, BitnetError, display_path, run_cli

if TYPE_CHECKING:
    from bitnet.hub import KnownModel

QUANT_TYPES = ["i2_s", "tl1", "tl2", "f16", "f32"]


def _use_pretuned(model_dir: Path, quant_type: str) -> None:
    """Generate the TL kernels of the model's preset (preset_kernels/<model name>/) before the
    build, as `utils/codegen_<q>.py --preset` does."""
    from bitnet.codegen.tl import PRESETS, read_config, write

    preset = PRESETS / model_dir.name / f"kernel_config_{quant_type}.ini"
    if not preset.is_file():
        known = sorted(p.parent.name for p in PRESETS.glob(f"*/kernel_config_{quant_type}.ini"))
        raise BitnetError(f"no {quant_type} preset for {model_dir.name} (presets: {', '.join(known) or 'none'}); "
                               f"drop --use-pretuned for the generic kernels, or tune this machine with "
                               f"`python utils/tune_kernels.py --model {display_path(model_dir)} -q {quant_type}`")
    write(quant_type, read_config(preset), stamp=f"setup_env.py --use-pretuned: {display_path(preset)}")
    click.echo(f"      {quant_type} kernels from {display_path(preset)} -> include/bitnet-lut-kernels.h")


def _check_checkpoint(model_dir: Path) -> None:
    """Fail early (before the build) on a directory that cannot be a HF checkpoint."""
    if not model_dir.is_dir():
        raise BitnetError(f"model directory {model_dir} not found: pass a directory holding a "
                          "Hugging Face checkpoint (config.json, *.safetensors, tokenizer files)")
    missing = [pattern for pattern in ("config.json", "*.safetensors") if not any(model_dir.glob(pattern))]
    if missing:
        raise BitnetError(f"{model_dir} is not a Hugging Face checkpoint: no {' and no '.join(missing)} "
                          "in it (expected config.json, *.safetensors and tokenizer files)")


def _step(n: int, text: str) -> None:
    click.echo(f"[{n}/3] {text}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--hf-repo", "-hr", metavar="ORG/NAME",
              help="Download this model from the Hugging Face Hub into models/NAME: one of bitnet.cpp's "
                   "models (an unknown id is refused with the list).")
@click.option("--model-dir", "-md", type=click.Path(path_type=Path), metavar="DIR",
              help="Use the Hugging Face checkpoint already in DIR (no network).")
@click.option("--quant-type", "-q", type=click.Choice(QUANT_TYPES), default="i2_s", show_default=True,
              help="Type of the ternary weight matrices in the GGUF.")
@click.option("--quant-embd", type=click.Choice(["f32", "f16", "q8_0", "q6_k", "q4_0"]), is_flag=False,
              flag_value="f16", default=None, metavar="[TYPE]",
              help="Type of the token embedding / output matrix; alone, f16 (bitnet.cpp's flag)  "
                   "[default: q6_k with i2_s, tl1 or tl2 (q8_0 when the hidden size is not a multiple of 256), "
                   "else the -q type]")
@click.option("--use-pretuned", "-p", is_flag=True,
              help="With -q tl1/tl2: generate the TL kernels from the model's tuned tiles in preset_kernels/.")
@click.option("--log-dir", "-ld", type=click.Path(file_okay=False, path_type=Path), default=Path("logs"),
              show_default=True, help="Where the build log goes.")
def main(hf_repo: str | None, model_dir: Path | None, quant_type: str, quant_embd: str | None,
         use_pretuned: bool, log_dir: Path) -> None:
    """Download (or take) a BitNet b1.58 model, build the engine and convert the model to GGUF.

    With neither --hf-repo nor --model-dir, the small model that ships in models/ is used.
    """
    if hf_repo and model_dir:
        raise click.UsageError("--hf-repo and --model-dir cannot be used together: pick one "
                               "(--hf-repo downloads into models/NAME, --model-dir uses a local checkpoint)")
    if use_pretuned and quant_type not in ("tl1", "tl2"):
        raise click.UsageError(f"--use-pretuned selects TL kernel tiles: use it with -q tl1 or -q tl2, not {quant_type}")
    # Imported here so that `--help` and flag errors stay instant.
    from bitnet import hub
    from bitnet.build import build_engine

    if hf_repo:
        known = hub.known_model(hf_repo)
        if known.gguf:
            _setup_ready_gguf(known, quant_type, quant_embd, log_dir)
            return
        _step(1, f"downloading {known.repo_id} into {display_path(hub.local_dir_for(known.repo_id))}")
        model_dir = hub.download(known.repo_id, allow_patterns=known.allow_patterns)
    elif model_dir:
        _step(1, f"using the checkpoint in {display_path(model_dir)}")
    else:
        model_dir = DEFAULT_MODEL_DIR
        _step(1, f"using the model that ships with bitnet: {display_path(model_dir)}")
    _check_checkpoint(model_dir)
    from bitnet.convert.hf import check, convert, gguf_for

    check(model_dir, quant_type, quant_embd)  # an unsupported checkpoint is refused now, not after the build
    if use_pretuned:
        _use_pretuned(model_dir, quant_type)

    _step(2, f"building the engine (log: {display_path(log_dir / 'build.log')})")
    build_engine(log_dir=log_dir)

    gguf, embd_type, current = gguf_for(model_dir, quant_type, quant_embd)
    if current:
        _step(3, f"{display_path(gguf)} is up to date (newer than its checkpoint): skipping conversion")
    else:
        _step(3, f"converting to {quant_type} (embeddings {embd_type}): {display_path(gguf)}")
        convert(model_dir, gguf, outtype=quant_type, embd_type=embd_type)
    _print_ready(gguf)


def _setup_ready_gguf(known: KnownModel, quant_type: str, quant_embd: str | None, log_dir: Path) -> None:
    """The three steps for a repository that ships its GGUF: download it, build, no conversion."""
    from bitnet import hub
    from bitnet.build import build_engine

    if quant_type != "i2_s" or quant_embd:
        base = known.repo_id.removesuffix("-gguf")
        raise click.UsageError(f"{known.repo_id} ships one ready-made file, {known.gguf}: drop -q/--quant-embd, "
                               f"or use --hf-repo {base} to convert the checkpoint with other settings")
    local = hub.local_dir_for(known.repo_id)
    _step(1, f"downloading {known.repo_id} ({known.gguf}) into {display_path(local)}")
    model_dir = hub.download(known.repo_id, allow_patterns=known.allow_patterns)
    gguf = model_dir / known.gguf
    if not gguf.is_file():
        raise BitnetError(f"{known.repo_id} has no {known.gguf}: the repository changed; download a GGUF "
                          "by hand and pass it to run_inference.py -m")
    _step(2, f"building the engine (log: {display_path(log_dir / 'build.log')})")
    build_engine(log_dir=log_dir)
    _step(3, f"{known.repo_id} is a ready-made GGUF: no conversion")
    _print_ready(gguf)


def _print_ready(gguf: Path) -> None:
    run_cmd = ["python", display_path(REPO_ROOT / "run_inference.py"), "-m", display_path(gguf),
               "-p", DEFAULT_PROMPT, "-n", "64"]
    click.echo(f"\nready: {display_path(gguf)}\nrun it with:\n  {shlex.join(run_cmd)}")


if __name__ == "__main__":
    run_cli(main)
