"""Convert a Hugging Face ternary checkpoint to GGUF (bitnet.cpp's script name and flags).

    python utils/convert_hf_to_gguf.py MODEL_DIR [--outtype i2_s|tl1|tl2|f16|f32] [--outfile FILE] [--embd-type TYPE]

The conversion itself is bitnet.convert.hf.convert (architectures, tensor types, layouts).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

if __package__ in (None, ""):  # run as `python utils/convert_hf_to_gguf.py`: make `bitnet` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import run_cli  # noqa: E402
from bitnet.convert.hf import EMBD_TYPES, FILE_TYPES, convert  # noqa: E402


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--outtype", "-q", default="i2_s", show_default=True, type=click.Choice(list(FILE_TYPES)),
              help="Type of the ternary linear weights.")
@click.option("--outfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Output path [default: MODEL_DIR/ggml-model-<outtype>.gguf].")
@click.option("--embd-type", type=click.Choice(list(EMBD_TYPES)),
              help="Type of token_embd and output.weight [default: q6_k for i2_s, tl1 and tl2 (q8_0 when the "
                   "hidden size is not a multiple of 256), else the --outtype].")
def main(model_dir, outtype, outfile, embd_type):
    """Convert a Hugging Face ternary checkpoint (BitNet b1.58 2B4T, 1bitLLM, ternary Llama /
    Falcon3 / Falcon-E) in MODEL_DIR to GGUF."""
    path = convert(model_dir, outfile, outtype=outtype, embd_type=embd_type)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
