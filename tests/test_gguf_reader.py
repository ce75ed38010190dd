"""The GGUF reader and the tensor type table, tested through tests/cpp/test_gguf.cpp.

The C++ test program is compiled here with AddressSanitizer and UBSan (g++ directly, so these
tests do not depend on the rest of the engine). Files are handcrafted with gguf_craft.py, which
is independent of the C++ reader, so every expectation comes from the writer's side:
  - a metadata and tensor-table round trip over every value type, both GGUF versions and a
    non-default alignment;
  - fp16 <-> fp32 conversions bit-exact against numpy over the whole half range and around
    every rounding boundary;
  - every corrupt file of gguf_craft.corrupt_cases() gives one "error: ..." line and exit 1,
    with no sanitizer report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf_craft as gc

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["tests/cpp/test_gguf.cpp", "src/gguf/gguf.cpp", "src/kernels/types.cpp",
           "src/util/common.cpp"]
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


@pytest.fixture(scope="session")
def test_gguf(tmp_path_factory) -> Path:
    """tests/cpp/test_gguf.cpp built with AddressSanitizer and UBSan."""
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("test_gguf") / "test_gguf"
    cmd = [cxx, "-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", "-Isrc", "-Iinclude", *SOURCES, "-o", str(exe)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}"
    return exe


def run(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **SANITIZER_ENV})


def test_selftest(test_gguf):
    r = run(test_gguf)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# ---- metadata and tensor table round trip -------------------------------------------------------

def f32(x: float) -> float:
    return float(np.float32(x))


def fmt_f(x: float) -> str:
    return "%.17g" % x


# (key, type, value, elem type for arrays); FLOAT32 values are given already float32-exact
# except 0.1, whose expected value is its float32 rounding.
ROUND_TRIP_KVS = [
    ("u8", gc.U8, 255, None), ("i8", gc.I8, -128, None),
    ("u16", gc.U16, 65535, None), ("i16", gc.I16, -32768, None),
    ("u32", gc.U32, 2**32 - 1, None), ("i32", gc.I32, -2**31, None),
    ("u64", gc.U64, 2**64 - 1, None), ("i64", gc.I64, -2**63, None),
    ("f32", gc.F32, 0.1, None), ("f32.inf", gc.F32, -math.inf, None),
    ("f64", gc.F64, math.pi, None), ("f64.tiny", gc.F64, 5e-324, None),
    ("bool.t", gc.BOOL, True, None), ("bool.f", gc.BOOL, False, None),
    ("str", gc.STR, 'quote " backslash \\ newline \n tab \t ünïcödé 🦙', None),
    ("str.empty", gc.STR, "", None),
    ("arr.u8", gc.ARR, [0, 1, 255], gc.U8), ("arr.i8", gc.ARR, [-128, 127], gc.I8),
    ("arr.u16", gc.ARR, [65535], gc.U16), ("arr.i16", gc.ARR, [-32768, 5], gc.I16),
    ("arr.u32", gc.ARR, [2**32 - 1, 0], gc.U32), ("arr.i32", gc.ARR, [-2**31, 2**31 - 1], gc.I32),
    ("arr.u64", gc.ARR, [2**63 - 1], gc.U64), ("arr.i64", gc.ARR, [-2**63, 7], gc.I64),
    ("arr.f32", gc.ARR, [0.1, -2.5, math.inf], gc.F32), ("arr.f64", gc.ARR, [1e300, -0.0], gc.F64),
    ("arr.bool", gc.ARR, [True, False, True], gc.BOOL),
    ("arr.str", gc.ARR, ["a", "", "Ġhello", "<|end|>"], gc.STR),
    ("arr.empty", gc.ARR, [], gc.I32),
]


def expected_value(vtype, value, elem):
    def one(t, v):
        if t == gc.F32:
            return fmt_f(f32(v))
        if t == gc.F64:
            return fmt_f(v)
        return v
    if vtype == gc.ARR:
        return [one(elem, v) for v in value]
    return one(vtype, value)


def round_trip_tensors(rng: np.random.Generator) -> list[gc.Tensor]:
    """One tensor of each kind of type: floats (rows checked through dequantize_row), block
    types with random bytes (checked by hash), 1 to 4 dimensions."""
    def raw(name, shape, t):
        return gc.Tensor(name, shape, t, rng.integers(0, 256, gc.tensor_nbytes(t, shape),
                                                      dtype=np.uint8).tobytes())
    f16 = rng.standard_normal((3, 5)).astype("<f2")
    bf16 = (rng.standard_normal((2, 7)).astype("<f4").view("<u4") >> 16).astype("<u2")
    return [
        gc.Tensor("f32.1d", (5,), gc.GGML_F32, rng.standard_normal(5).astype("<f4").tobytes()),
        gc.Tensor("f16.2d", (5, 3), gc.GGML_F16, f16.tobytes()),
        gc.Tensor("bf16.2d", (7, 2), gc.GGML_BF16, bf16.tobytes()),
        raw("q8_0.3d", (64, 2, 3), gc.GGML_Q8_0),
        raw("i2_s.2d", (256, 3), gc.GGML_I2_S),
        raw("tq2_0.4d", (256, 1, 2, 2), gc.GGML_TQ2_0),
    ]


def expected_last_row(t: gc.Tensor) -> list[str] | None:
    dtype = {gc.GGML_F32: "<f4", gc.GGML_F16: "<f2", gc.GGML_BF16: "<u2"}.get(t.ggml_type)
    if dtype is None:
        return None
    a = np.frombuffer(t.data, dtype=dtype).reshape(-1, t.shape[0])[-1]
    if t.ggml_type == gc.GGML_BF16:
        a = (a.astype("<u4") << 16).view("<f4")
    return [fmt_f(float(x)) for x in a.astype(np.float32)]


def fnv1a(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@pytest.mark.parametrize("version,alignment", [(3, 32), (2, 64), (3, 1)])
def test_round_trip(test_gguf, tmp_path, version, alignment):
    kvs = [gc.kv(k, t, v, elem=e) for k, t, v, e in ROUND_TRIP_KVS]
    if alignment != 32:
        kvs.insert(3, gc.kv("general.alignment", gc.U32, alignment))
    tensors = round_trip_tensors(np.random.default_rng(version))
    built = gc.build(kvs, tensors, version=version, alignment=alignment)
    path = tmp_path / "rt.gguf"
    path.write_bytes(built.data)

    r = run(test_gguf, "dump", path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    head, kv_lines, tensor_lines = lines[0], lines[1:1 + len(kvs)], lines[1 + len(kvs):]
    assert head == {"version": version, "alignment": alignment, "n_kv": len(kvs),
                    "n_tensors": len(tensors)}

    expected = [(k, t, e, expected_value(t, v, e)) for k, t, v, e in ROUND_TRIP_KVS]
    if alignment != 32:
        expected.insert(3, ("general.alignment", gc.U32, None, alignment))
    assert len(kv_lines) == len(expected)
    for got, (key, vtype, elem, value) in zip(kv_lines, expected):
        assert got["key"] == key and got["type"] == vtype, got
        if vtype == gc.ARR:
            assert got["elem"] == elem, got
        assert got["value"] == value, f"{key}: {got['value']!r} != {value!r}"

    assert [t["tensor"] for t in tensor_lines] == [t.name for t in tensors]  # file order kept
    for got, t, start in zip(tensor_lines, tensors, built.tensor_offsets):
        assert got["type"] == t.ggml_type and got["ne"] == list(t.shape), got
        assert got["offset"] == start - built.data_start
        assert got["offset"] % alignment == 0
        assert got["nbytes"] == len(t.data) == gc.tensor_nbytes(t.ggml_type, t.shape)
        assert got["fnv"] == fnv1a(t.data), t.name
        assert got.get("last_row") == expected_last_row(t), t.name


def test_no_tensors_and_no_padding(test_gguf, tmp_path):
    """A metadata-only file may end right after its header, without data-section padding."""
    path = tmp_path / "meta.gguf"
    built = gc.build([gc.kv("general.architecture", gc.STR, "x")], [])
    assert built.tensor_info_start % 32 != 0  # so the cut really removes the padding
    path.write_bytes(built.data[:built.tensor_info_start])
    r = run(test_gguf, "dump", path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[1])["value"] == "x"


# ---- fp16 ---------------------------------------------------------------------------------------

def test_fp16_conversions_match_numpy(test_gguf, tmp_path):
    rng = np.random.default_rng(0)
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    exact = halves.astype(np.float32).view(np.uint32)
    # every half, its float32 neighbours, the midpoints between consecutive halves (the rounding
    # ties) and their neighbours, plus random bit patterns over the whole float32 range
    with np.errstate(invalid="ignore"):  # inf + -inf at the ends of the range
        mids = (halves[:-1].astype(np.float64) + halves[1:].astype(np.float64)) / 2
    mids = mids[np.isfinite(mids)].astype(np.float32).view(np.uint32)
    bits = np.concatenate([exact, exact + 1, exact - 1, mids, mids + 1, mids - 1,
                           rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32),
                           np.array([0x7f800001, 0xffc00000, 0x7fffffff, 0x477ff000, 0x477fefff,
                                     0x33000000, 0x33000001], dtype=np.uint32)])
    src = tmp_path / "in.bin"
    bits.astype("<u4").tofile(src)
    r = run(test_gguf, "fp16", src, tmp_path / "h.bin", tmp_path / "f.bin")
    assert r.returncode == 0, r.stderr

    got_h = np.fromfile(tmp_path / "h.bin", dtype="<u2")
    with np.errstate(over="ignore"):
        ref = bits.view(np.float32).astype(np.float16)
    ref_h = ref.view(np.uint16)
    nan = np.isnan(ref)
    # NaNs: numpy keeps the payload without quieting, the engine quiets; both must stay NaN
    # with the same sign.
    assert np.all(np.isnan(got_h[nan].view(np.float16)))
    assert np.array_equal(got_h[nan] >> 15, ref_h[nan] >> 15)
    diff = np.flatnonzero(got_h[~nan] != ref_h[~nan])
    assert diff.size == 0, [(hex(bits[~nan][i]), hex(got_h[~nan][i]), hex(ref_h[~nan][i]))
                            for i in diff[:10]]

    got_f = np.fromfile(tmp_path / "f.bin", dtype="<u4")
    assert np.array_equal(got_f, exact)  # bit-exact, NaN payloads and signed zeros included


# ---- corrupt files ------------------------------------------------------------------------------

CASES = gc.corrupt_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_corrupt_file(test_gguf, tmp_path, name):
    data, word = CASES[name]
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    gc.assert_one_line_error(run(test_gguf, "dump", path), word, str(path))


def test_every_truncation_point_of_the_header(test_gguf, tmp_path):
    """Cut a small but complete file after every byte of its header and tensor infos: each cut
    is an error, never a crash or an out-of-bounds read."""
    built = gc.build([gc.kv("general.architecture", gc.STR, "bitnet-b1.58"),
                      gc.kv("arr", gc.ARR, ["ab", "c"], elem=gc.STR),
                      gc.kv("f", gc.ARR, [1.0, 2.0], elem=gc.F64)],
                     [gc.Tensor("w", (4, 2), gc.GGML_F32, bytes(32))])
    src = tmp_path / "cut.gguf"
    for n in range(built.data_start + 1):
        src.write_bytes(built.data[:n])
        r = run(test_gguf, "dump", src)
        gc.assert_one_line_error(r, str(src))
        assert any(w in r.stderr for w in ("truncated", "empty", "magic")), r.stderr
