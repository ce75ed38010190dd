"""Bad model files given to the engine: each must give one clear line and exit code 1.

`bitnet-cli -m FILE -p hi -n 1` is run on handcrafted files (gguf_craft.py): every corrupt GGUF
of gguf_craft.corrupt_cases() (truncated in the header, the metadata, the tensor infos or the
data, wrong magic, version 1, data past the end, unknown tensor type, absurd counts, I2_S rows not
a multiple of 128, ...), then valid GGUF files the model loader must refuse (unknown architecture,
a missing tensor), a missing file and a directory. "Clear" is checked as: exit code 1 (not a
signal), exactly one non-empty line on stderr, containing "error" and the words that say what is
wrong, and no Python traceback or sanitizer report. With BITNET_BUILD_DIR pointing at a
BITNET_SANITIZE=ON build the same tests check that no bad file makes the engine read out of bounds.

A positive control first: the untouched minimal model must run, or every refusal below would
prove nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import gguf_craft as gc

CASES = gc.corrupt_cases()


@pytest.fixture(scope="session")
def cli(engine_bin) -> Path:
    exe = Path(engine_bin) / "bitnet-cli"
    assert exe.is_file(), f"{exe} was not built"
    return exe


def run_cli(cli: Path, model: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), "-m", str(model), "-p", "hi", "-n", "1"],
                          capture_output=True, text=True, errors="replace", timeout=120)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    return path


def test_minimal_model_runs(cli, tmp_path):
    r = run_cli(cli, write(tmp_path, "good", gc.minimal_model().data))
    assert r.returncode == 0, f"the valid minimal model fails:\n{r.stderr}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_corrupt_gguf(cli, tmp_path, name):
    data, word = CASES[name]
    path = write(tmp_path, name, data)
    gc.assert_one_line_error(run_cli(cli, path), word, str(path))


def test_unknown_architecture(cli, tmp_path):
    path = write(tmp_path, "foo", gc.minimal_model(arch="foo").data)
    gc.assert_one_line_error(run_cli(cli, path), "architecture", "'foo'", str(path))


@pytest.mark.parametrize("tensor", ["blk.0.ffn_up.weight", "blk.0.attn_sub_norm.weight",
                                    "token_embd.weight"])
def test_missing_tensor(cli, tmp_path, tensor):
    path = write(tmp_path, "missing", gc.minimal_model(drop_tensor=tensor).data)
    gc.assert_one_line_error(run_cli(cli, path), "missing", tensor, str(path))


def test_missing_file(cli, tmp_path):
    path = tmp_path / "no-such-model.gguf"
    gc.assert_one_line_error(run_cli(cli, path), str(path), "No such file")


def test_directory_instead_of_file(cli, tmp_path):
    gc.assert_one_line_error(run_cli(cli, tmp_path), str(tmp_path), "directory")


# ---- tensor tables of absurd size -----------------------------------------------------------------

def run_cli_small_ctx(cli: Path, model: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), "-m", str(model), "-p", "hi", "-n", "1", "-c", "16"],
                          capture_output=True, text=True, errors="replace", timeout=120)


def test_aliased_tensor_table_refused(cli, tmp_path):
    # 4096 blocks, ~45,000 tensor entries that all point at one data range: refused as soon as
    # the table is read (it used to load, with a lookup that scanned the table for every tensor).
    path = write(tmp_path, "alias", gc.deep_model(4096, alias=True).data)
    gc.assert_one_line_error(run_cli_small_ctx(cli, path), "overlap", "token_embd.weight",
                             str(path))


def test_many_tiny_layers_load(cli, tmp_path):
    # 4096 real blocks of dimension 8 (45,058 tensors): a legal file, bound with hash lookups.
    path = write(tmp_path, "deep", gc.deep_model(4096).data)
    r = run_cli_small_ctx(cli, path)
    assert r.returncode == 0, r.stderr


def test_too_many_layers_refused(cli, tmp_path):
    path = write(tmp_path, "too_deep", gc.deep_model(1, block_count=4097).data)
    gc.assert_one_line_error(run_cli_small_ctx(cli, path), "block_count", "4097", str(path))


# ---- the C API given bad sizes ---------------------------------------------------------------------

def test_c_api_sizes(engine_bin, tmp_path):
    # tests/cpp/test_api.cpp: negative lengths, NULL buffers, seq_len + n past INT32_MAX, absurd
    # n_threads, NaN logits; each an error value and a message, never a crash.
    exe = Path(engine_bin) / "test_api"
    assert exe.is_file(), f"{exe} was not built"
    r = subprocess.run([str(exe), str(write(tmp_path, "good", gc.minimal_model().data))],
                       capture_output=True, text=True, errors="replace", timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# ---- hyperparameters and special tokens the loader must refuse -------------------------------------

@pytest.mark.parametrize("key,vtype,value", [
    ("attention.layer_norm_rms_epsilon", gc.F32, float("nan")),
    ("attention.layer_norm_rms_epsilon", gc.F32, float("inf")),
    ("attention.layer_norm_rms_epsilon", gc.F32, -1e-5),
    ("rope.freq_base", gc.F32, 0.0),
    ("rope.freq_base", gc.F32, -10000.0),
    ("rope.freq_base", gc.F32, float("nan")),
    ("rope.freq_base", gc.F64, 1e300),  # beyond float: converting it would be undefined
    ("rope.freq_base", gc.F64, 1e-300),  # rounds to 0 as a float
])
def test_bad_float_hparam(cli, tmp_path, key, vtype, value):
    path = write(tmp_path, "hparam", gc.model_with_kv(f"{gc.ARCH}.{key}", vtype, value).data)
    gc.assert_one_line_error(run_cli(cli, path), key, "out of range", str(path))


@pytest.mark.parametrize("key,vtype,value", [
    ("tokenizer.ggml.bos_token_id", gc.U64, 2**32 + 5),  # was truncated to token 5
    ("tokenizer.ggml.eos_token_id", gc.I64, -2**32 + 5),
    ("tokenizer.ggml.eot_token_id", gc.U32, gc.N_VOCAB),
    ("tokenizer.ggml.padding_token_id", gc.I32, -2),
])
def test_bad_special_token_id(cli, tmp_path, key, vtype, value):
    path = write(tmp_path, "special", gc.model_with_kv(key, vtype, value).data)
    gc.assert_one_line_error(run_cli(cli, path), key, str(value), "vocabulary", str(path))


def test_token_type_beyond_32_bits(cli, tmp_path):
    types = [1] * (gc.N_VOCAB - 2) + [3, 2**32 + 3]  # was truncated to type 3
    path = tmp_path / "types.gguf"
    kvs = [e for e in gc.model_kvs() + gc.tokenizer_kvs() if b"token_type" not in e[:40]]
    kvs.append(gc.kv("tokenizer.ggml.token_type", gc.ARR, types, elem=gc.I64))
    path.write_bytes(gc.build(kvs, gc.model_tensors()).data)
    gc.assert_one_line_error(run_cli(cli, path), "token_type", str(2**32 + 3), str(path))


# ---- alignment 1: tensors at odd addresses ---------------------------------------------------------

@pytest.mark.parametrize("isa", ["scalar", "native"])
def test_alignment_1_runs_like_aligned(cli, tmp_path, isa):
    # general.alignment = 1 is legal; the F32 tensors then start at odd bytes. The sanitizer build
    # checks that no float is loaded from there; both files must give the same tokens.
    import os
    env = dict(os.environ)
    if isa == "scalar":
        env["BITNET_ISA"] = "scalar"
    else:
        env.pop("BITNET_ISA", None)
    outs = []
    for name, built in [("aligned", gc.minimal_model()), ("odd", gc.minimal_model_unaligned())]:
        path = write(tmp_path, name, built.data)
        r = subprocess.run([str(cli), "-m", str(path), "-p", "hi", "-n", "4", "--temp", "0"],
                           capture_output=True, text=True, errors="replace", timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1]


def test_kv_cache_size_overflow_refused(engine_lib, tmp_path):
    # 4096 layers x 4096 sequences x one KV head of 2^18 floats x 2^20 positions: the K cache is
    # 2^64 bytes, which wrapped to 0 in size_t; the context was made and the first decode wrote
    # through it (a segfault). Now the context is refused. The model file is 8 GB, nearly all hole.
    import sys

    built, size = gc.wide_kv_model(4096, 1 << 18)
    path = tmp_path / "wide_kv.gguf"
    with open(path, "wb") as f:
        f.write(built.data)
        f.truncate(size)
    code = ("import sys\n"
            "from bitnet.bindings import BitnetError, Context, Model\n"
            "m = Model(sys.argv[1])\n"
            "try:\n"
            "    c = Context(m, n_ctx=1 << 20, n_seq_max=4096, n_threads=1)\n"
            "except BitnetError as e:\n"
            "    sys.exit(f'error: {e}')\n"
            "c.decode([1])\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       errors="replace", timeout=300, cwd=Path(__file__).resolve().parent.parent)
    gc.assert_one_line_error(r, "KV cache size overflows")
