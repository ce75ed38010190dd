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
