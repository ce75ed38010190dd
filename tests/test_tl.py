"""TL1 / TL2 lookup-table types: the Python packer, the engine's kernels and whole-model results.

* tests/cpp/test_tl.cpp (run here) checks every ISA's TL kernels against Σ t·q computed directly
  from a matrix packed by its own C++ packer;
* the Python packer (bitnet/formats/tl_pack.py) round-trips, and its payload fed to the engine's kernels
  (test_tl --gemm) gives numpy's integer product, so both sides read the layout alike;
* a tl1 / tl2 file of a checkpoint gives logits identical, bit for bit, to the i2_s file of the
  same checkpoint (same integer products, same rescale), for a prompt batch and single tokens;
* bad input: shapes TL cannot hold, TL files without (or with another) layout key;
* the codegen writes a stamped header and kernel config (and takes the config back as a preset),
  refuses tiles that break a constraint, the 2B4T presets cover its shapes, and setup_env's
  --use-pretuned refuses what it cannot do before building anything;
* the tuner, codegen and the build end to end: the per-shape kernels built from a tuned preset
  pass test_tl, and a changed kernel_config.ini makes the build write the header again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import click
import numpy as np
import pytest

from tests.conftest import convert_to
from bitnet.common import REPO_ROOT
from bitnet.formats.tl_pack import (
    TL1_TYPE_ID,
    TL2_TYPE_ID,
    TL_BLOCK_KEY,
    TL_LAYOUT_KEY,
    pack_tl,
    tl2_k3,
    tl_nbytes,
    unpack_tl,
)

TYPES = {"TL1": TL1_TYPE_ID, "TL2": TL2_TYPE_ID}


@pytest.fixture
def tl_bin(engine_bin):
    path = engine_bin / "test_tl"
    assert path.is_file(), f"{path} was not built: configure with -DBITNET_BUILD_TESTS=ON"
    return path


def test_cpp_kernels_match_direct_product(tl_bin):
    r = subprocess.run([str(tl_bin)], check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"test_tl failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "ok" in r.stdout


@pytest.mark.parametrize("type_name", list(TYPES))
def test_pack_round_trip(type_name):
    rng = np.random.default_rng(1)
    type_id = TYPES[type_name]
    for k in (2, 4, 5, 6, 7, 130, 257, 258):
        if type_id == TL1_TYPE_ID and k % 2:
            continue
        t = rng.integers(-1, 2, size=(128, k)).astype(np.int8)
        buf = pack_tl(t, type_id, 0.25, 4.0)
        assert buf.dtype == np.uint8 and buf.size == tl_nbytes(type_id, 128, k)
        back, scale = unpack_tl(buf, type_id, (128, k))
        np.testing.assert_array_equal(back, t)
        assert scale == np.float32(0.25)
        assert np.frombuffer(buf[-28:-24].tobytes(), np.float32)[0] == 4.0  # divisor after the scale


def test_sizes():
    # TL1 is bitnet.cpp's size (n/4 + 32); TL2 1.67 bits a weight, the 0/2/4-column rest as pairs
    assert tl_nbytes(TL1_TYPE_ID, 2560, 2560) == 2560 * 2560 // 4 + 32
    assert [tl2_k3(k) for k in (6, 7, 8, 2560, 6912)] == [6, 3, 6, 2556, 6912]
    assert tl_nbytes(TL2_TYPE_ID, 64, 6912) == 6912 // 3 * 40 + 32
    assert tl_nbytes(TL2_TYPE_ID, 64, 2560) == 852 * 40 + 2 * 32 + 32


@pytest.mark.parametrize("isa", ["scalar", None])
@pytest.mark.parametrize("type_name", list(TYPES))
def test_python_pack_feeds_engine_kernels(tl_bin, tmp_path, type_name, isa):
    rng = np.random.default_rng(2)
    m, k, n = 192, 389 if type_name == "TL2" else 390, 3
    t = rng.integers(-1, 2, size=(m, k)).astype(np.int8)
    x = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    x[0] = -128  # the largest table entries
    (tmp_path / "w").write_bytes(pack_tl(t, TYPES[type_name], 1.0).tobytes())
    (tmp_path / "x").write_bytes(x.tobytes())
    env = dict(os.environ, **({"BITNET_ISA": isa} if isa else {}))
    args = [type_name, m, k, n, tmp_path / "w", tmp_path / "x", tmp_path / "o"]
    r = subprocess.run([str(tl_bin), "--gemm", *map(str, args)], check=False, capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    got = np.fromfile(tmp_path / "o", dtype=np.int32).reshape(n, m)
    np.testing.assert_array_equal(got, x.astype(np.int64) @ t.T.astype(np.int64))


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="blocks of 64"):
        pack_tl(np.zeros((96, 4), np.int8), TL1_TYPE_ID, 1.0)
    with pytest.raises(ValueError, match="even length"):
        pack_tl(np.zeros((64, 5), np.int8), TL1_TYPE_ID, 1.0)
    with pytest.raises(ValueError, match="outside"):
        pack_tl(np.full((64, 6), 2, np.int8), TL2_TYPE_ID, 1.0)
    with pytest.raises(ValueError, match="bytes"):
        unpack_tl(np.zeros(10, np.uint8), TL2_TYPE_ID, (64, 6))


def _logits(lib, path, ids, n_threads):
    from bitnet.bindings import Context, Model

    with Model(path, lib) as model, Context(model, n_ctx=64, n_threads=n_threads) as ctx:
        prompt = ctx.decode(ids, logits_all=True)  # one batch: the GEMM path
        step = [ctx.decode([i], logits_all=True) for i in ids[:3]]  # one token at a time: GEMV
    return np.concatenate([prompt] + step)


@pytest.mark.parametrize("outtype", ["tl1", "tl2"])
def test_logits_identical_to_i2s(engine_lib, tiny_packed, tiny_gguf, outtype):
    path = convert_to(tiny_packed, outtype)
    ids = [1, 17, 400, 23, 999, 5, 64, 300, 2, 77]
    for n_threads in (1, 2):
        want = _logits(engine_lib, tiny_gguf, ids, n_threads)
        got = _logits(engine_lib, path, ids, n_threads)
        np.testing.assert_array_equal(got, want)
    assert path.stat().st_size < tiny_gguf.stat().st_size or outtype == "tl1"


def _patched(src, dst, old: bytes, new: bytes, value: int | None = None):
    data = bytearray(src.read_bytes())
    at = data.index(old)
    data[at:at + len(new)] = new
    if value is not None:  # the uint32 after the key string and its type tag
        data[at + len(old) + 4:at + len(old) + 8] = value.to_bytes(4, "little")
    dst.write_bytes(bytes(data))
    return dst


def test_foreign_or_mismatched_tl_files_are_refused(engine_lib, tiny_packed, tmp_path):
    from bitnet.bindings import BitnetError, Model

    path = convert_to(tiny_packed, "tl2")
    key = TL_BLOCK_KEY.encode()
    no_key = _patched(path, tmp_path / "nokey.gguf", key, b"bitnet.tl.xx")
    with pytest.raises(BitnetError, match="no 'bitnet.tl.bm' key.*--outtype tl2"):
        Model(no_key, engine_lib)
    layout = TL_LAYOUT_KEY.encode()
    old = _patched(path, tmp_path / "old-layout.gguf", layout, b"bitnet.tl.xxxxxx")
    with pytest.raises(BitnetError, match="TL byte layout version 0.*this build reads version 1.*--outtype tl2"):
        Model(old, engine_lib)
    other = _patched(path, tmp_path / "bm32.gguf", key, key, value=32)
    with pytest.raises(BitnetError, match="row blocks of 32.*convert_hf_to_gguf.py"):
        Model(other, engine_lib)


def test_converter_refuses_shapes_tl_cannot_hold(tmp_path):
    from bitnet.convert.hf import convert
    from utils.generate_dummy_model import generate

    ckpt = tmp_path / "ffn96"
    generate(ckpt, preset="tiny", seed=0, fmt="packed", ffn=96)
    with pytest.raises(click.ClickException, match=r"ffn_gate.*blocks of 64.*--outtype i2_s"):
        convert(ckpt, tmp_path / "x.gguf", outtype="tl1", embd_type="f16")
    assert not (tmp_path / "x.gguf").exists()


def test_codegen_writes_stamped_header_and_config(tiny_packed, tmp_path):
    from click.testing import CliRunner

    from bitnet.codegen.tl import main_command, read_config

    header, config = tmp_path / "k.h", tmp_path / "k.ini"
    args = ["--model", str(tiny_packed), "--BK", "96,192,252,6", "--BM", "128",
            "--header", str(header), "--config", str(config)]
    r = CliRunner().invoke(main_command("tl2"), args)
    assert r.exit_code == 0, r.output
    text = header.read_text()
    assert "GENERATED by utils/codegen_tl2.py" in text and "--BK 96,192,252,6" in text
    # tiny: q/o 256x256, k/v 128x256, gate/up 512x256, down 256x512; BM capped at nothing, BK in triples
    assert "X(2, 256, 256, 128, 32)" in text and "X(2, 128, 256, 128, 64)" in text
    assert "X(2, 512, 256, 128, 84)" in text and "X(2, 256, 512, 128, 2)" in text
    tiles = read_config(config)
    assert [(t.M, t.K, t.BM, t.BK) for t in tiles][:2] == [(256, 256, 128, 96), (128, 256, 128, 192)]
    # the config round-trips as a preset
    r = CliRunner().invoke(main_command("tl2"), ["--preset", str(config), "--header", str(tmp_path / "p.h"),
                                                 "--config", str(tmp_path / "p.ini")])
    assert r.exit_code == 0, r.output
    assert "X(2, 256, 256, 128, 32)" in (tmp_path / "p.h").read_text()


@pytest.mark.parametrize("qtype, args, message", [
    ("tl2", ["--BK", "258"], "at most 252"),
    ("tl2", ["--BK", "9"], "multiple of 6"),
    ("tl1", ["--BK", "256"], "at most 254"),
    ("tl1", ["--BK", "63"], "multiple of 2"),
    ("tl2", ["--BM", "96"], "multiple of 64"),
    ("tl2", ["--BM", "0"], "multiple of 64"),
    ("tl2", ["--bm", "32"], "fixed at 64"),
    ("tl2", ["--BM", "64,128"], "2 values for 4 shapes"),
])
def test_codegen_refuses_bad_tiles(tiny_packed, tmp_path, qtype, args, message):
    from click.testing import CliRunner

    from bitnet.codegen.tl import main_command

    header = tmp_path / "k.h"
    r = CliRunner().invoke(main_command(qtype), ["--model", str(tiny_packed), *args, "--header", str(header),
                                                 "--config", str(tmp_path / "k.ini")])
    assert r.exit_code != 0 and message in r.output, r.output
    assert not header.exists()


@pytest.mark.parametrize("args, message, rc", [
    (["-q", "i2_s", "--use-pretuned"], "use it with -q tl1 or -q tl2", 2),  # a flag misused: usage
    (["-q", "tl2", "--use-pretuned"], "no tl2 preset for", 1),  # a fact of this model: one error line
])
def test_setup_env_use_pretuned_refusals(tiny_packed, args, message, rc):
    # both refusals come before the build and write nothing
    r = subprocess.run([sys.executable, str(REPO_ROOT / "setup_env.py"), "--model-dir", str(tiny_packed), *args],
                       check=False, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert r.returncode == rc and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "BitNet-b1.58-2B-4T" in r.stderr or "i2_s" in args
    if rc == 1:
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


# Every model setup_env knows but Falcon-E (whose config this project has never seen) has presets,
# for the shapes of the generator preset that mirrors its config.
PRESET_SHAPES = {
    "BitNet-b1.58-2B-4T": "2b4t", "bitnet-b1.58-2B-4T-bf16": "2b4t", "bitnet_b1_58-large": "bitnet-large",
    "bitnet_b1_58-3B": "bitnet-3b", "Llama3-8B-1.58-100B-tokens": "llama3-8b",
    "Falcon3-1B-Instruct-1.58bit": "falcon3-1b", "Falcon3-3B-Instruct-1.58bit": "falcon3-3b",
    "Falcon3-3B-1.58bit": "falcon3-3b", "Falcon3-7B-Instruct-1.58bit": "falcon3-7b",
    "Falcon3-7B-1.58bit": "falcon3-7b", "Falcon3-10B-Instruct-1.58bit": "falcon3-10b",
    "Falcon3-10B-1.58bit": "falcon3-10b",
}


def test_presets_cover_the_known_models_shapes():
    from bitnet.codegen.tl import PRESETS, read_config, validate
    from utils.generate_dummy_model import _complete_shape, resolve_config
    from bitnet.hub import KNOWN_MODELS

    known = {m.local_name for m in KNOWN_MODELS if not m.local_name.startswith("Falcon-E")}
    assert set(PRESET_SHAPES) == known
    assert {p.name for p in PRESETS.iterdir() if p.is_dir()} == known
    for name, preset in PRESET_SHAPES.items():
        s = _complete_shape(resolve_config(preset))
        q, kv = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]  # rows of Wq, of Wk and Wv
        shapes = {(q, s["hidden"]), (kv, s["hidden"]), (s["hidden"], q), (s["ffn"], s["hidden"]),
                  (s["hidden"], s["ffn"])}
        for qtype in ("tl1", "tl2"):
            tiles = read_config(PRESETS / name / f"kernel_config_{qtype}.ini")
            validate(qtype, tiles)
            assert {(t.M, t.K) for t in tiles} == shapes, (name, qtype)


def test_tuner_codegen_and_build_rewrite_the_header(tiny_packed, tmp_path):
    """The tiles path end to end, in a copy of the sources (a generated header must not reach the
    tree the other tests build): the tuner times candidate tiles and writes a preset with the
    fastest; codegen turns it into include/bitnet-lut-kernels.h; the build compiles those per-shape
    kernels, which test_tl checks (one token and a batch); a changed include/kernel_config.ini then
    makes the build write the header again."""
    import shutil

    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.gguf", "bitnet-lut-kernels*.h", "kernel_config.ini")
    for d in ("cmake", "include", "src", "tests/cpp", "utils", "bitnet", "preset_kernels"):
        shutil.copytree(REPO_ROOT / d, src / d, ignore=skip)
    shutil.copy(REPO_ROOT / "CMakeLists.txt", src)

    def run(*args):
        r = subprocess.run([sys.executable, *map(str, args)], cwd=src, capture_output=True, text=True, timeout=900,
                           check=False)
        assert r.returncode == 0, f"{args} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    preset = tmp_path / "preset.ini"
    out = run(src / "utils/tune_kernels.py", "-m", tiny_packed, "-q", "tl2", "--BM", "64,128", "--BK", "48",
              "--out", preset, "--build-dir", tmp_path / "build-tune")
    assert "TL2 time per call in µs, columns BM/BK" in out and "64/48" in out and "128/48" in out
    from bitnet.codegen.tl import read_config

    tiles = read_config(preset)
    assert {(t.M, t.K) for t in tiles} == {(256, 256), (128, 256), (512, 256), (256, 512)}
    assert all(t.BM in (64, 128) and t.BK == 48 for t in tiles)

    run(src / "utils/codegen_tl2.py", "--preset", preset)
    # the first build turns the C++ tests on (a later plain utils/build.py run keeps them)
    run("-c", f"import sys; sys.path.insert(0, {str(src)!r}); from bitnet.build import build_engine; "
              f"build_engine({str(tmp_path / 'build')!r}, {str(tmp_path / 'logs')!r}, "
              "cmake_args=['-DBITNET_BUILD_TESTS=ON'])")

    def kernel_test() -> str:
        r = subprocess.run([tmp_path / "build/bin/test_tl"], capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    # test_tl checks each generated shape's kernel of every SIMD set on top of its 242 generic cases
    assert int(re.search(r"(\d+) TL cases", kernel_test()).group(1)) > 242

    config = src / "include/kernel_config.ini"
    text = config.read_text()
    config.write_text(text.replace("bk = 48", "bk = 96", 1))
    st = config.stat()
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # newer than the header, surely
    run(src / "utils/build.py", "--build-dir", tmp_path / "build", "--log-dir", tmp_path / "logs")
    header = (src / "include/bitnet-lut-kernels.h").read_text()
    assert "rewritten by the build from" in header and "/* BK = 96 values */" in header, header
    kernel_test()
