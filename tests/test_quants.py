"""The llama.cpp block types against independent references.

* tests/cpp/test_quants.cpp (run here) checks every ISA's kernels against the scalar reference;
* the engine's dequantize_row against gguf-py's numpy dequantizers, byte-identical floats;
* bitnet.formats.quants.quantize: the bytes gguf-py would write where it has a quantizer; for Q6_K (which
  gguf-py cannot quantize) its error against the values, decoded by gguf-py, beside a plain
  absmax quantizer's;
* every ISA's matmuls against float64 numpy on the weights gguf-py dequantizes and the int8
  activations the engine's contract defines (per block d = absmax/127, q = rint(x/d));
* I2_S with rows that are not a multiple of 128 (bitnet.formats.ternary.pack_i2s pads them) through the
  engine's I2_S kernel, exact.

The C++ side is driven through test_quants' --dequantize / --gemm modes.
"""

import os
import subprocess

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

from bitnet.common import BitnetError
from bitnet.formats.quants import GGML_TYPE_IDS, quantize
from bitnet.formats.ternary import pack_i2s, unpack_i2s

ISAS = ["scalar", "avx2", "avx512vnni"]
BLOCK = {"q8_0": 32, "q4_0": 32, "q6_k": 256, "tq1_0": 256, "tq2_0": 256}


@pytest.fixture
def quants_bin(engine_bin):
    path = engine_bin / "test_quants"
    assert path.is_file(), f"{path} was not built: configure with -DBITNET_BUILD_TESTS=ON"
    return path


def run(binary, *args, isa=None):
    env = dict(os.environ)
    if isa:
        env["BITNET_ISA"] = isa
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def qtype(name):
    return gguf.GGMLQuantizationType(GGML_TYPE_IDS[name])


def test_kernels_match_reference(quants_bin):
    r = run(quants_bin)
    assert r.returncode == 0, f"test_quants failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "all quant kernel tests passed" in r.stdout


def random_weights(rng, rows, k):
    # a spread of magnitudes, so blocks have different scales
    return (rng.standard_normal((rows, k)) * rng.uniform(0.01, 1.0, (rows, 1))).astype(np.float32)


@pytest.mark.parametrize("name", list(GGML_TYPE_IDS))
def test_dequantize_matches_gguf(quants_bin, tmp_path, name):
    rng = np.random.default_rng(1)
    rows, k = 5, 512
    blocks = quantize(random_weights(rng, rows, k), name)
    if name == "tq1_0":
        # every byte value is a valid base-3 encoding: check the decoder on all of them
        blocks[:, :52] = rng.integers(0, 256, (rows, 52), dtype=np.uint8)
    (tmp_path / "w").write_bytes(blocks.tobytes())
    r = run(quants_bin, "--dequantize", name.upper(), k, tmp_path / "w", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    got = np.fromfile(tmp_path / "out", dtype=np.float32).reshape(rows, k)
    want = gguf_dequantize(blocks, qtype(name)).reshape(rows, k)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "tq1_0", "tq2_0"])
def test_quantize_is_ggufs(name):
    x = random_weights(np.random.default_rng(2), 3, 768)
    got = quantize(x, name)
    assert got.dtype == np.uint8 and got.shape == (3, 768 // BLOCK[name] * gguf.GGML_QUANT_SIZES[qtype(name)][1])
    np.testing.assert_array_equal(got, np.asarray(gguf_quantize(x, qtype(name))).reshape(3, -1))


def test_q6_k_quantizer():
    rng = np.random.default_rng(3)
    x = random_weights(rng, 8, 1024)
    x[0, :256] = 0.0  # an all-zero super-block
    blocks = quantize(x, "q6_k")
    assert blocks.shape == (8, 4 * 210)
    y = gguf_dequantize(blocks, gguf.GGMLQuantizationType.Q6_K).reshape(x.shape)
    assert (y[0, :256] == 0).all()
    # a plain absmax quantizer: per 16 values s = absmax/31, levels round(x/s)
    sub = x.reshape(-1, 16)
    s = np.abs(sub).max(-1, keepdims=True) / 31
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.where(s > 0, np.clip(np.rint(sub / s), -32, 31) * s, 0).reshape(x.shape)
    err, err_plain = np.sqrt(((y - x) ** 2).mean()), np.sqrt(((plain - x) ** 2).mean())
    # the scale search beats absmax even with float scales (Q6_K's are rounded to int8 x d)
    assert err < 0.95 * err_plain, (err, err_plain)


def test_quantize_bad_input():
    with pytest.raises(BitnetError, match="rows of 100 values cannot be stored as q6_k"):
        quantize(np.zeros((2, 100), np.float32), "q6_k")
    with pytest.raises(BitnetError, match="unknown quantization type 'q5_0'"):
        quantize(np.zeros((2, 32), np.float32), "q5_0")


def act_q8(x, bs):
    """The engine's per-block int8 activations (quants.h): d = absmax/127, q = rint(x * (1/d))."""
    xb = x.reshape(x.shape[0], -1, bs)
    d = (np.abs(xb).max(-1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.rint((xb * inv).astype(np.float32))
    return (q * d).astype(np.float64).reshape(x.shape), (np.abs(q) * d).reshape(x.shape)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q6_k"])
def test_float_matmul_vs_numpy(quants_bin, tmp_path, isa, name):
    rng = np.random.default_rng(4)
    M, K, N = 37, 768, 5
    w = quantize(random_weights(rng, M, K), name)
    x = rng.standard_normal((N, K)).astype(np.float32)
    (tmp_path / "w").write_bytes(w.tobytes())
    (tmp_path / "x").write_bytes(x.tobytes())
    r = run(quants_bin, "--gemm", name.upper(), M, K, N, tmp_path / "w", tmp_path / "x", tmp_path / "y", isa=isa)
    if r.returncode != 0 and "BITNET_ISA" in r.stderr:
        pytest.skip(f"{isa} not supported here")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa
    got = np.fromfile(tmp_path / "y", dtype=np.float32).reshape(N, M)
    wd = gguf_dequantize(w, qtype(name)).reshape(M, K).astype(np.float64)
    xq, xabs = act_q8(x, BLOCK[name])
    want = xq @ wd.T
    # float32 block sums: each of at most K+3 roundings is relative 2^-24 of a partial sum
    bound = (K + 3) * 2.0**-24 * (xabs @ np.abs(wd).T)
    assert (np.abs(got - want) <= bound + 1e-30).all(), np.abs(got - want).max()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["tq1_0", "tq2_0"])
def test_ternary_matmul_vs_numpy(quants_bin, tmp_path, isa, name):
    rng = np.random.default_rng(5)
    M, K, N = 21, 512, 6
    # ternary weights with a different scale per row: blocks with different d
    t = rng.integers(-1, 2, (M, K)).astype(np.float32)
    w = quantize(t * rng.uniform(0.1, 2.0, (M, 1)).astype(np.float32), name)
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    (tmp_path / "w").write_bytes(w.tobytes())
    (tmp_path / "x").write_bytes(q.tobytes())
    r = run(quants_bin, "--gemm", name.upper(), M, K, N, tmp_path / "w", tmp_path / "x", tmp_path / "y", isa=isa)
    if r.returncode != 0 and "BITNET_ISA" in r.stderr:
        pytest.skip(f"{isa} not supported here")
    assert r.returncode == 0, r.stderr
    raw = np.fromfile(tmp_path / "y", dtype=np.uint8)
    got_f = raw[: 4 * N * M].view(np.float32).reshape(N, M)
    got_i = raw[4 * N * M:].view(np.int32).reshape(N, M)
    wd = gguf_dequantize(w, qtype(name)).reshape(M, K).astype(np.float64)
    d = np.abs(wd).reshape(M, -1, 256).max(-1)  # every block holds a ±1: |value| = d
    tern = np.rint(wd / np.repeat(d, 256, axis=1))
    np.testing.assert_array_equal(got_i, q.astype(np.int64) @ (tern + 1).T)
    want = q.astype(np.float64) @ wd.T
    bound = (K // 256 + 2) * 2.0**-24 * (np.abs(q).astype(np.float64) @ np.abs(wd).T)
    assert (np.abs(got_f - want) <= bound).all(), np.abs(got_f - want).max()


@pytest.mark.parametrize("isa", ISAS)
def test_i2s_padded_rows(quants_bin, tmp_path, isa):
    rng = np.random.default_rng(6)
    M, K, N = 19, 200, 3  # K = one full block and a partial one
    t = rng.integers(-1, 2, (M, K)).astype(np.int8)
    payload = pack_i2s(t, 0.75)
    assert payload.size == M * 2 * 32 + 32
    back, scale = unpack_i2s(payload, (M, K))
    np.testing.assert_array_equal(back, t)
    assert scale == np.float32(0.75)
    q = rng.integers(-128, 128, (N, K), dtype=np.int8)
    (tmp_path / "w").write_bytes(payload.tobytes())
    (tmp_path / "x").write_bytes(q.tobytes())
    r = run(quants_bin, "--gemm", "I2_S", M, K, N, tmp_path / "w", tmp_path / "x", tmp_path / "y", isa=isa)
    if r.returncode != 0 and "BITNET_ISA" in r.stderr:
        pytest.skip(f"{isa} not supported here")
    assert r.returncode == 0, r.stderr
    got = np.fromfile(tmp_path / "y", dtype=np.int32).reshape(N, M)
    np.testing.assert_array_equal(got, q.astype(np.int64) @ (t.astype(np.int64) + 1).T)
