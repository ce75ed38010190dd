"""setup_env.py as a user runs it: in a subprocess, checked on its output, exit code and files.

The checkpoints are tiny ones made by the dummy-model generator; downloads come from a local fake
Hub (tests/fake_hub.py), never from the network. The engine is the session build of conftest's
``engine_bin``: setup_env.py builds into the same directory (``BITNET_BUILD_DIR``), where Ninja
finds nothing to do. The GGUF that setup writes is compared byte for byte with one written by
calling the converter directly with the settings the flags stand for.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub

from bitnet.common import DEFAULT_MODEL_DIR, DEFAULT_PROMPT
from bitnet.convert.hf import convert
from bitnet.formats.gguf_reader import read_gguf

ROOT = Path(__file__).resolve().parent.parent
F32, F16, Q8_0, Q6_K, I2_S = 0, 1, 8, 14, 36


def run_setup(*args: str, engine_bin: Path | None = None, cwd: Path | None = None,
              **env_extra: str) -> subprocess.CompletedProcess:
    """Run setup_env.py with ``args``; HF_HOME and the models root stay inside the test's tmp dir
    (callers pass BITNET_MODELS_DIR / HF_HOME / HF_ENDPOINT)."""
    env = {k: v for k, v in os.environ.items() if k not in ("BITNET_DEBUG", "HF_ENDPOINT")}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", **env_extra)
    if engine_bin is not None:
        env["BITNET_BUILD_DIR"] = str(engine_bin.parent)
    return subprocess.run([sys.executable, str(ROOT / "setup_env.py"), *args], cwd=cwd or ROOT, env=env,
                          check=False, capture_output=True, text=True, timeout=900)


def assert_clean_failure(res: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """Non-zero exit with a message, no Python traceback."""
    out = res.stdout + res.stderr
    assert res.returncode == code, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in res.stderr, res.stderr


def printed_command(stdout: str) -> list[str]:
    """The run_inference.py command that setup prints last."""
    line = stdout.strip().splitlines()[-1].strip()
    assert line.startswith("python ") and "run_inference.py" in line, stdout
    return shlex.split(line)


@pytest.fixture
def ckpt(tiny_packed, tmp_path) -> Path:
    """A private copy of the tiny checkpoint (setup writes its GGUF next to it)."""
    dest = tmp_path / "tiny-bitnet"
    shutil.copytree(tiny_packed, dest, ignore=shutil.ignore_patterns("*.gguf*"))
    return dest


def free_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the happy paths ------------------------------------------------------------------------


def test_model_dir_builds_converts_and_prints_a_working_command(engine_bin, ckpt, tmp_path):
    res = run_setup("--model-dir", str(ckpt), "--log-dir", str(tmp_path / "logs"), engine_bin=engine_bin,
                    cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    for step in ("[1/3]", "[2/3] building the engine", "[3/3] converting"):
        assert step in res.stdout, res.stdout
    log = (tmp_path / "logs" / "build.log").read_text()
    assert "--build" in log and "[exit code 0]" in log, log

    gguf = ckpt / "ggml-model-i2_s.gguf"
    reference = convert(ckpt, tmp_path / "reference.gguf", outtype="i2_s")
    assert gguf.read_bytes() == reference.read_bytes()
    types = {name: t.type_id for name, t in read_gguf(gguf).tensors.items()}
    assert types["token_embd.weight"] == Q6_K and types["blk.0.attn_q.weight"] == I2_S

    cmd = printed_command(res.stdout)
    assert (tmp_path / cmd[cmd.index("-m") + 1]).resolve() == gguf.resolve()
    cmd[0] = sys.executable
    env = {**os.environ, "BITNET_BUILD_DIR": str(engine_bin.parent)}
    # A random model may emit byte tokens that are not valid UTF-8 on their own: read bytes.
    gen = subprocess.run(cmd + ["--seed", "1"], check=False, cwd=tmp_path, env=env, capture_output=True,
                         timeout=300)
    assert gen.returncode == 0, gen.stderr
    out = gen.stdout.decode("utf-8", "replace")
    assert out.startswith(DEFAULT_PROMPT) and len(out) > len(DEFAULT_PROMPT + "\n"), out


def test_rerun_skips_conversion_until_an_input_or_a_setting_changes(engine_bin, ckpt, tmp_path):
    args = ["--model-dir", str(ckpt), "--log-dir", str(tmp_path / "logs")]
    gguf = ckpt / "ggml-model-i2_s.gguf"
    assert run_setup(*args, engine_bin=engine_bin).returncode == 0
    first = gguf.stat().st_mtime_ns

    res = run_setup(*args, engine_bin=engine_bin)
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stdout and "skipping conversion" in res.stdout, res.stdout
    assert gguf.stat().st_mtime_ns == first

    res = run_setup(*args, "--quant-embd", engine_bin=engine_bin)
    assert res.returncode == 0 and "[3/3] converting" in res.stdout, res.stdout + res.stderr
    assert read_gguf(gguf).tensors["token_embd.weight"].type_id == F16

    res = run_setup(*args, "--quant-embd", engine_bin=engine_bin)
    assert "skipping conversion" in res.stdout, res.stdout
    res = run_setup(*args, "--quant-embd", "q8_0", engine_bin=engine_bin)
    assert res.returncode == 0 and "[3/3] converting" in res.stdout, res.stdout + res.stderr
    assert read_gguf(gguf).tensors["token_embd.weight"].type_id == Q8_0
    later = time.time() + 5  # a checkpoint file edited after the conversion
    os.utime(ckpt / "config.json", (later, later))
    res = run_setup(*args, "--quant-embd", engine_bin=engine_bin)
    assert res.returncode == 0 and "[3/3] converting" in res.stdout, res.stdout + res.stderr


def test_quant_type_f16_writes_its_own_file(engine_bin, ckpt, tmp_path):
    res = run_setup("-md", str(ckpt), "-q", "f16", "-ld", str(tmp_path / "logs"), engine_bin=engine_bin)
    assert res.returncode == 0, res.stdout + res.stderr
    types = {name: t.type_id for name, t in read_gguf(ckpt / "ggml-model-f16.gguf").tensors.items()}
    assert types["blk.0.attn_q.weight"] == F16 and types["token_embd.weight"] == F16
    assert not (ckpt / "ggml-model-i2_s.gguf").exists()


def test_hf_repo_downloads_into_models_name(engine_bin, ckpt, tmp_path):
    """A known id, spelled as bitnet.cpp spells it (the Hub's name differs in case), is downloaded
    into models/<bitnet.cpp's model name> and converted. The tiny checkpoint stands in for it."""
    models = tmp_path / "models"
    with FakeHub({"microsoft/bitnet-b1.58-2B-4T": ckpt}) as hub:
        res = run_setup("--hf-repo", "microsoft/BitNet-b1.58-2B-4T", "--log-dir", str(tmp_path / "logs"),
                        engine_bin=engine_bin, HF_ENDPOINT=hub.url, BITNET_MODELS_DIR=str(models),
                        HF_HOME=str(tmp_path / "hf"))
        assert res.returncode == 0, res.stdout + res.stderr
        assert any(r.startswith("GET /microsoft/bitnet-b1.58-2B-4T/resolve/") for r in hub.requests), hub.requests
        assert any(r.startswith("CDN GET /") for r in hub.requests), hub.requests  # safetensors via LFS
    local = models / "BitNet-b1.58-2B-4T"
    for src in ckpt.iterdir():
        assert (local / src.name).read_bytes() == src.read_bytes(), src.name
    assert (local / "ggml-model-i2_s.gguf").is_file()
    assert str(local / "ggml-model-i2_s.gguf") in " ".join(printed_command(res.stdout))


@pytest.fixture
def gguf_repo(tiny_gguf, tmp_path) -> Path:
    """A stand-in for microsoft/bitnet-b1.58-2B-4T-gguf: a ready GGUF and files setup must skip."""
    repo = tmp_path / "gguf-repo"
    repo.mkdir()
    shutil.copy(tiny_gguf, repo / "ggml-model-i2_s.gguf")
    (repo / "README.md").write_text("model card\n")
    (repo / "ggml-model-f16.gguf").write_bytes(b"not wanted")
    return repo


def test_gguf_repo_is_downloaded_and_used_without_conversion(engine_bin, gguf_repo, tmp_path):
    models = tmp_path / "models"
    with FakeHub({"microsoft/bitnet-b1.58-2B-4T-gguf": gguf_repo}) as hub:
        res = run_setup("--hf-repo", "microsoft/BitNet-b1.58-2B-4T-gguf", "--log-dir", str(tmp_path / "logs"),
                        engine_bin=engine_bin, HF_ENDPOINT=hub.url, BITNET_MODELS_DIR=str(models),
                        HF_HOME=str(tmp_path / "hf"))
        assert res.returncode == 0, res.stdout + res.stderr
        assert any(r.startswith("CDN GET /") for r in hub.requests), hub.requests  # the GGUF via LFS
    assert "[3/3]" in res.stdout and "no conversion" in res.stdout, res.stdout
    assert "converting" not in res.stdout
    local = models / "BitNet-b1.58-2B-4T"
    assert (local / "ggml-model-i2_s.gguf").read_bytes() == (gguf_repo / "ggml-model-i2_s.gguf").read_bytes()
    assert sorted(p.name for p in local.iterdir() if not p.name.startswith(".")) == ["ggml-model-i2_s.gguf"]
    cmd = printed_command(res.stdout)
    assert cmd[cmd.index("-m") + 1] == str(local / "ggml-model-i2_s.gguf")


def test_gguf_repo_refuses_other_quant_types(gguf_repo, tmp_path):
    with FakeHub({"microsoft/bitnet-b1.58-2B-4T-gguf": gguf_repo}) as hub:
        res = run_setup("--hf-repo", "microsoft/bitnet-b1.58-2B-4T-gguf", "-q", "f16", HF_ENDPOINT=hub.url,
                        BITNET_MODELS_DIR=str(tmp_path / "models"), HF_HOME=str(tmp_path / "hf"))
        assert not hub.requests
    assert_clean_failure(res, 2, "ships one ready-made file", "--hf-repo microsoft/bitnet-b1.58-2B-4T ")


# bitnet.cpp's setup_env.py SUPPORTED_HF_MODELS, less its two embedding models (no text generation).
BITNET_CPP_IDS = [
    "1bitLLM/bitnet_b1_58-large", "1bitLLM/bitnet_b1_58-3B", "HF1BitLLM/Llama3-8B-1.58-100B-tokens",
    "tiiuae/Falcon3-7B-Instruct-1.58bit", "tiiuae/Falcon3-7B-1.58bit", "tiiuae/Falcon3-10B-Instruct-1.58bit",
    "tiiuae/Falcon3-10B-1.58bit", "tiiuae/Falcon3-3B-Instruct-1.58bit", "tiiuae/Falcon3-3B-1.58bit",
    "tiiuae/Falcon3-1B-Instruct-1.58bit", "microsoft/BitNet-b1.58-2B-4T", "tiiuae/Falcon-E-3B-Instruct",
    "tiiuae/Falcon-E-1B-Instruct", "tiiuae/Falcon-E-3B-Base", "tiiuae/Falcon-E-1B-Base",
]


def test_known_ids_cover_bitnet_cpps_list():
    from bitnet import hub

    for repo_id in [*BITNET_CPP_IDS, "microsoft/BitNet-b1.58-2B-4T-gguf"]:
        known = hub.known_model(repo_id)
        assert known.repo_id.lower() == repo_id.lower()
        # bitnet.cpp's model_name, so that its instructions' paths (models/NAME/...) hold here too
        assert hub.local_dir_for(repo_id).name == repo_id.split("/")[1].removesuffix("-gguf")
    assert hub.known_model("microsoft/BitNet-b1.58-2B-4T-gguf").gguf == "ggml-model-i2_s.gguf"


@pytest.mark.skipif(not DEFAULT_MODEL_DIR.is_dir(), reason=f"{DEFAULT_MODEL_DIR} is not in the checkout")
def test_no_model_argument_uses_the_shipped_model(engine_bin, tmp_path):
    res = run_setup("--log-dir", str(tmp_path / "logs"), engine_bin=engine_bin)
    assert res.returncode == 0, res.stdout + res.stderr
    assert DEFAULT_MODEL_DIR.name in res.stdout.splitlines()[0], res.stdout
    assert (DEFAULT_MODEL_DIR / "ggml-model-i2_s.gguf").is_file()


# --- bad input: one clear line, no traceback, before any build --------------------------------


def test_hf_repo_and_model_dir_together_are_rejected(tmp_path):
    res = run_setup("--hf-repo", "a/b", "--model-dir", str(tmp_path))
    assert_clean_failure(res, 2, "--hf-repo and --model-dir cannot be used together")


def test_missing_model_dir(tmp_path):
    res = run_setup("--model-dir", str(tmp_path / "nowhere"))
    assert_clean_failure(res, 1, "nowhere not found")
    assert "[2/3]" not in res.stdout


def test_model_dir_without_a_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    res = run_setup("--model-dir", str(tmp_path))
    assert_clean_failure(res, 1, "is not a Hugging Face checkpoint", "*.safetensors")


def _unsupported_architecture(ckpt: Path) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (ckpt / "config.json").write_text(json.dumps(cfg))


def _one_layer_too_many(ckpt: Path) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["num_hidden_layers"] += 1
    (ckpt / "config.json").write_text(json.dumps(cfg))


def _no_tokenizer(ckpt: Path) -> None:
    for name in ("tokenizer.json", "tokenizer.model"):
        (ckpt / name).unlink(missing_ok=True)


@pytest.mark.parametrize("spoil, message", [
    (_unsupported_architecture, "model_type 'gpt2'"),
    (_one_layer_too_many, "missing from the checkpoint"),
    (_no_tokenizer, "neither tokenizer.json nor tokenizer.model"),
])
def test_unsupported_checkpoint_is_refused_before_the_build(engine_bin, ckpt, spoil, message):
    spoil(ckpt)
    res = run_setup("--model-dir", str(ckpt), engine_bin=engine_bin)
    assert_clean_failure(res, 1, message)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "[2/3]" not in res.stdout, res.stdout  # refused before the engine build
    assert not list(ckpt.glob("*.gguf*"))


def test_unknown_quant_type():
    res = run_setup("-q", "q4_k")
    assert_clean_failure(res, 2, "'q4_k' is not one of")


def test_unreachable_hub(tmp_path):
    res = run_setup("--hf-repo", "1bitLLM/bitnet_b1_58-large", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                    BITNET_MODELS_DIR=str(tmp_path / "models"), HF_HOME=str(tmp_path / "hf"))
    assert_clean_failure(res, 1, "could not reach the Hugging Face Hub", "--model-dir DIR")


def test_known_id_missing_on_the_hub(ckpt, tmp_path):
    with FakeHub({"test-org/tiny-bitnet": ckpt}) as hub:
        res = run_setup("--hf-repo", "tiiuae/Falcon-E-1B-Base", HF_ENDPOINT=hub.url,
                        BITNET_MODELS_DIR=str(tmp_path / "models"), HF_HOME=str(tmp_path / "hf"))
    assert_clean_failure(res, 1, "repository tiiuae/Falcon-E-1B-Base not found")


@pytest.mark.parametrize("repo_id", ["test-org/tiny-bitnet", "just-a-name"])
def test_unknown_id_is_refused_with_the_list(ckpt, tmp_path, repo_id):
    with FakeHub({"test-org/tiny-bitnet": ckpt}) as hub:
        res = run_setup("--hf-repo", repo_id, HF_ENDPOINT=hub.url, BITNET_MODELS_DIR=str(tmp_path / "models"),
                        HF_HOME=str(tmp_path / "hf"))
        assert not hub.requests  # refused before any download
    assert_clean_failure(res, 1, f"unknown model '{repo_id}'", "--model-dir DIR")
    first, *listed = res.stderr.strip().splitlines()
    assert first.startswith("error: unknown model")
    listed_ids = [line.split()[0] for line in listed]
    assert {i.lower() for i in BITNET_CPP_IDS} <= {i.lower() for i in listed_ids}, res.stderr
    assert "microsoft/bitnet-b1.58-2B-4T-gguf" in listed_ids
    assert "[1/3]" not in res.stdout
