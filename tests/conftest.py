"""Shared fixtures: the engine built once per session, and tiny checkpoints made by the dummy-model
generator (never downloaded), converted to GGUF once per session.

BITNET_BUILD_DIR selects the build directory (default build/), e.g. an AddressSanitizer build.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The reference model runs in float32 on one thread, without TorchDynamo compiling every call.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Context settings of the exact attention (torch's summation order over an f32 KV cache): what the
# tests that compare bits with transformers run. The default, tiled attention is compared with it
# in test_attention.py.
EXACT_ATTN = {"type_k": "f32", "type_v": "f32", "flash_attn": False}
EXACT_ATTN_FLAGS = ["-ctk", "f32", "-ctv", "f32", "-fa", "off"]


@pytest.fixture(scope="session")
def engine_bin(tmp_path_factory, pytestconfig) -> Path:
    """The engine's bin/ directory, built (or brought up to date) once per session. What the build
    is doing reaches the terminal past pytest's capture: on a fresh clone it takes minutes."""
    from bitnet.build import build_engine
    from bitnet.common import build_dir, display_path

    logs = tmp_path_factory.mktemp("build-logs")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write(f"\nbuilding the engine in {display_path(build_dir())} "
                         f"(minutes on a fresh clone; log: {logs / 'build.log'})\n")
        try:
            return build_engine(build_dir(), log_dir=logs)
        except Exception as e:  # show the build log tail in the test report
            pytest.fail(f"building the engine failed: {e}", pytrace=False)


@pytest.fixture(scope="session")
def engine_lib(engine_bin) -> Path:
    lib = engine_bin.parent / "lib" / "libbitnet.so"
    assert lib.is_file(), f"{lib} was not built"
    os.environ["BITNET_BUILD_DIR"] = str(engine_bin.parent)
    return lib


def _make_checkpoint(root: Path, fmt: str, seed: int = 0, **overrides) -> Path:
    from utils.generate_dummy_model import generate

    out = root / f"tiny-{fmt}-{seed}"
    generate(out, preset="tiny", seed=seed, fmt=fmt, **overrides)
    return out


@pytest.fixture(scope="session")
def tiny_packed(tmp_path_factory) -> Path:
    """Tiny BitNet checkpoint in the packed offline format of the real 2B4T checkpoint."""
    return _make_checkpoint(tmp_path_factory.mktemp("ckpt"), "packed")


@pytest.fixture(scope="session")
def tiny_packed_auto(tmp_path_factory) -> Path:
    """The same in the layout of the real 2B4T config: AutoBitLinear offline (scale multiplied)."""
    return _make_checkpoint(tmp_path_factory.mktemp("ckpt"), "packed-auto")


@pytest.fixture(scope="session")
def tiny_bf16(tmp_path_factory) -> Path:
    """Tiny BitNet checkpoint with bf16 master weights (ternarized by the converter)."""
    return _make_checkpoint(tmp_path_factory.mktemp("ckpt"), "bf16", seed=1)


def convert_to(ckpt: Path, outtype: str) -> Path:
    from bitnet.convert.hf import convert

    # A float embedding/output (not the converter's quantized default): the tests that use these
    # files compare logits with transformers, whose output layer is float.
    out = ckpt / f"ggml-model-{outtype}.gguf"
    if not out.exists():
        convert(ckpt, out, outtype=outtype, embd_type="f32" if outtype == "f32" else "f16")
    return out


@pytest.fixture(scope="session")
def tiny_gguf(tiny_packed) -> Path:
    return convert_to(tiny_packed, "i2_s")


@pytest.fixture(scope="session")
def shipped_gguf(tmp_path_factory) -> Path:
    """The shipped model converted as setup_env.py does (the converter's defaults), into a
    temporary folder: a fresh clone has no GGUF in models/ until setup runs."""
    from bitnet.common import DEFAULT_MODEL_DIR
    from bitnet.convert.hf import convert

    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"{DEFAULT_MODEL_DIR} is not in the checkout")
    return convert(DEFAULT_MODEL_DIR, tmp_path_factory.mktemp("shipped") / "ggml-model-i2_s.gguf")
