#!/usr/bin/env python3
"""Set up bitnet: get a model, build the engine, convert the model to GGUF.

    python setup_env.py                                   # the small model that ships in models/
    python setup_env.py --hf-repo microsoft/BitNet-b1.58-2B-4T -q i2_s
    python setup_env.py --model-dir path/to/checkpoint    # a checkpoint already on disk

Three steps, each skipped when already done: (1) download the checkpoint into models/<name> (or
check the one given), (2) configure and build the engine with CMake + Ninja (log in --log-dir),
(3) convert it to <model dir>/ggml-model-<quant type>.gguf, unless that file is newer than the
checkpoint and the converter and was written with the same embedding type. It ends by printing
the command that runs the model. The work is done by utils/hub.py, utils/build.py and
utils/convert_hf_to_gguf.py; this file only parses flags and reports progress.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from utils.common import DEFAULT_MODEL_DIR, DEFAULT_PROMPT, REPO_ROOT, BitnetError, display_path, run_cli

QUANT_TYPES = ["i2_s", "f16", "f32"]
GGML_TYPE_IDS = {"f32": 0, "f16": 1}  # ggml type ids of the embedding types we write


def _check_checkpoint(model_dir: Path) -> None:
    """Fail early (before the build) on a directory that cannot be a HF checkpoint."""
    if not model_dir.is_dir():
        raise BitnetError(f"model directory {model_dir} not found: pass a directory holding a "
                          "Hugging Face checkpoint (config.json, *.safetensors, tokenizer files)")
    missing = [pattern for pattern in ("config.json", "*.safetensors") if not any(model_dir.glob(pattern))]
    if missing:
        raise BitnetError(f"{model_dir} is not a Hugging Face checkpoint: no {' and no '.join(missing)} "
                          "in it (expected config.json, *.safetensors and tokenizer files)")


def _conversion_inputs(model_dir: Path) -> list[Path]:
    """Files whose change makes a converted GGUF stale: the checkpoint's files and the converter."""
    files = [p for p in model_dir.iterdir()
             if p.is_file() and not p.name.startswith(".") and ".gguf" not in p.name]
    return files + [REPO_ROOT / "utils" / "convert_hf_to_gguf.py"]


def _is_up_to_date(gguf: Path, model_dir: Path, embd_type: str) -> bool:
    if not gguf.is_file():
        return False
    newest_input = max((p.stat().st_mtime for p in _conversion_inputs(model_dir) if p.exists()), default=0)
    if gguf.stat().st_mtime <= newest_input:
        return False
    from utils.gguf_reader import read_gguf  # numpy + gguf: imported only when needed

    try:
        embd = read_gguf(gguf).tensors.get("token_embd.weight")
    except (ValueError, UnicodeDecodeError, OSError):  # truncated or foreign file: convert again
        return False
    return embd is not None and embd.type_id == GGML_TYPE_IDS[embd_type]


def _step(n: int, text: str) -> None:
    click.echo(f"[{n}/3] {text}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--hf-repo", "-hr", metavar="ORG/NAME",
              help="Download this model from the Hugging Face Hub into models/NAME.")
@click.option("--model-dir", "-md", type=click.Path(path_type=Path), metavar="DIR",
              help="Use the Hugging Face checkpoint already in DIR (no network).")
@click.option("--quant-type", "-q", type=click.Choice(QUANT_TYPES), default="i2_s", show_default=True,
              help="Type of the ternary weight matrices in the GGUF.")
@click.option("--quant-embd", is_flag=True,
              help="Store the token embeddings as f16 instead of f32 (halves their size).")
@click.option("--log-dir", "-ld", type=click.Path(file_okay=False, path_type=Path), default=Path("logs"),
              show_default=True, help="Where the build log goes.")
def main(hf_repo: str | None, model_dir: Path | None, quant_type: str, quant_embd: bool,
         log_dir: Path) -> None:
    """Download (or take) a BitNet b1.58 model, build the engine and convert the model to GGUF.

    With neither --hf-repo nor --model-dir, the small model that ships in models/ is used.
    """
    if hf_repo and model_dir:
        raise click.UsageError("--hf-repo and --model-dir cannot be used together: pick one "
                               "(--hf-repo downloads into models/NAME, --model-dir uses a local checkpoint)")
    # Imported here so that `--help` and flag errors stay instant.
    from utils import hub
    from utils.build import build_engine
    from utils.convert_hf_to_gguf import convert

    if hf_repo:
        _step(1, f"downloading {hf_repo} into {display_path(hub.local_dir_for(hf_repo))}")
        model_dir = hub.download(hf_repo)
    elif model_dir:
        _step(1, f"using the checkpoint in {display_path(model_dir)}")
    else:
        model_dir = DEFAULT_MODEL_DIR
        _step(1, f"using the model that ships with bitnet: {display_path(model_dir)}")
    _check_checkpoint(model_dir)

    _step(2, f"building the engine (log: {display_path(log_dir / 'build.log')})")
    build_engine(log_dir=log_dir)

    gguf = model_dir / f"ggml-model-{quant_type}.gguf"
    embd_type = "f16" if quant_embd else "f32"
    if _is_up_to_date(gguf, model_dir, embd_type):
        _step(3, f"{display_path(gguf)} is up to date (newer than its checkpoint): skipping conversion")
    else:
        _step(3, f"converting to {quant_type} (embeddings {embd_type}): {display_path(gguf)}")
        convert(model_dir, gguf, outtype=quant_type, embd_type=embd_type)

    run_cmd = ["python", display_path(REPO_ROOT / "run_inference.py"), "-m", display_path(gguf),
               "-p", DEFAULT_PROMPT, "-n", "64"]
    click.echo(f"\nready: {display_path(gguf)}\nrun it with:\n  {shlex.join(run_cmd)}")


if __name__ == "__main__":
    run_cli(main)
