"""Generate the TL1 kernels specialized for a model's matrix shapes.

    python utils/codegen_tl1.py --model models/BitNet-b1.58-2B-4T --BM 256 --BK 128
    python utils/codegen_tl1.py --preset preset_kernels/BitNet-b1.58-2B-4T/kernel_config_tl1.ini

writes include/bitnet-lut-kernels.h and include/kernel_config.ini (see bitnet/codegen/tl.py for
the tiles and their constraints); rebuild the engine afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.codegen.tl import main_command  # noqa: E402
from bitnet.common import run_cli  # noqa: E402

main = main_command("tl1")

if __name__ == "__main__":
    run_cli(main)
