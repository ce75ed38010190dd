"""The Python package: `pip install` from a git URL (a clean clone of a commit, built as a wheel),
the README's Python examples, and the BitNetModel API on the shipped model (generate, streaming,
batch_generate, chat with its KV cache, the OpenAI-shaped results, errors).

Equalities are exact: the engine gives a token the same logits whatever else is in its batch, so
batch_generate, the prompt cache and streaming must all give the very text generate gives alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import tomllib
from pathlib import Path

import pytest

from bitnet import (BitNetModel, BitnetError, ContextLengthError, GenerationConfig, InvalidArgumentError,
                    ModelLoadError)
from bitnet.common import DEFAULT_MODEL_DIR, REPO_ROOT

PROMPTS = ["Create a new", "Return the value of", "Raise an error when the file", "Close the", "If the",
           "The default is", "Convert the string to a list of", "Open"]


@pytest.fixture(scope="module")
def api(engine_lib, shipped_gguf):
    with BitNetModel.from_pretrained(shipped_gguf, n_threads=1, context_length=512) as model:
        yield model


def cli_text(engine_bin: Path, gguf: Path, prompt: str, n: int) -> str:
    """bitnet-cli's greedy continuation of prompt (it prints the prompt, the text and a newline)."""
    res = subprocess.run([str(engine_bin / "bitnet-cli"), "-m", str(gguf), "-p", prompt, "-n", str(n), "--temp", "0",
                          "-t", "1"], capture_output=True, text=True, timeout=120, check=True)
    assert res.stdout.startswith(prompt) and res.stdout.endswith("\n")
    return res.stdout[len(prompt):-1]


def test_pyproject_dependencies_are_requirements_txt():
    """One list of dependencies: pyproject's are requirements.txt's lines, pins included, less the
    build tools (which the build backend brings)."""
    reqs = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r and not r.startswith(("cmake", "ninja"))]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == reqs


def test_generate_greedy_equals_bitnet_cli(api, engine_bin, shipped_gguf):
    want = cli_text(engine_bin, shipped_gguf, "Create a new", 32)
    assert api.generate("Create a new", max_new_tokens=32) == want
    assert api.generate("Create a new", GenerationConfig(max_new_tokens=32)) == want


def test_streaming_yields_the_same_text(api):
    for kwargs in ({}, {"do_sample": True, "temperature": 0.9, "seed": 3}):
        whole = api.generate("Return the value of", max_new_tokens=40, **kwargs)
        pieces = list(api.generate("Return the value of", max_new_tokens=40, stream=True, **kwargs))
        assert len(pieces) > 1 and "".join(pieces) == whole
    msgs = [{"role": "user", "content": "Create a new list"}]
    whole = api.create_chat_completion(msgs, max_tokens=24, temperature=0)["choices"][0]["message"]["content"]
    chunks = list(api.create_chat_completion(msgs, max_tokens=24, temperature=0, stream=True))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "temperature": 0.9, "top_k": 20, "top_p": 0.9,
                                           "seed": 11, "repetition_penalty": 1.1}], ids=["greedy", "seeded"])
def test_batch_generate_equals_separate_generate_calls(api, sampling):
    """8 prompts, 3 at a time: 3 run together, and each next one joins as one finishes (stops differ:
    some end at end of text, some at max_new_tokens)."""
    alone = [api.generate(p, max_new_tokens=48, **sampling) for p in PROMPTS]
    together = api.batch_generate(PROMPTS, max_new_tokens=48, batch_size=3, **sampling)
    assert together == alone
    assert len(set(alone)) > 4  # the prompts are not all answered alike


def test_chat_evaluates_only_the_new_tokens_and_answers_as_a_fresh_run(api, shipped_gguf):
    history = [{"role": "system", "content": "You document Python."}]
    api.generate("Open", max_new_tokens=4)  # the slot holds something else first
    previous: list[int] = []
    for question in ["Create a new list", "What does it return?", "And for a dict?"]:
        before = list(history) + [{"role": "user", "content": question}]
        prompt = api.chat_tokens(before)
        reply = api.chat(history, question, max_new_tokens=12)
        assert history[-2:] == [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        assert api.last_eval_tokens + api.last_cached_tokens == len(prompt)
        # everything up to the previous turn's prompt was in the cache (and its answer, as far as
        # the rendered text tokenizes the same)
        assert prompt[:len(previous)] == previous and api.last_cached_tokens >= len(previous)
        previous = prompt
        with BitNetModel(shipped_gguf, n_threads=1, context_length=512) as fresh:
            assert fresh.chat(before, max_new_tokens=12) == reply
            assert fresh.last_cached_tokens == 0 and fresh.last_eval_tokens == len(prompt)


def test_openai_shapes_validate_against_the_openai_types(api):
    from openai.types import Completion
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    msgs = [{"role": "system", "content": "You document Python."}, {"role": "user", "content": "Open a file"}]
    done = ChatCompletion.model_validate(api.create_chat_completion(msgs, max_tokens=16, seed=1))
    assert done.choices[0].message.role == "assistant" and done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    chunks = [ChatCompletionChunk.model_validate(c) for c in api.create_chat_completion(msgs, max_tokens=8,
                                                                                          stream=True)]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason is not None
    c = Completion.model_validate(api.create_completion("Create a new", max_tokens=8, temperature=0))
    assert c.choices[0].text == api.generate("Create a new", max_new_tokens=8)
    chunks = list(api.create_completion("Create a new", max_tokens=4, stream=True))
    # OpenAI streams completions as Completion objects whose finish_reason is null until the last
    # (the openai client builds them without validation): the last one validates as it is.
    Completion.model_validate(chunks[-1])
    for chunk in chunks[:-1]:
        Completion.model_validate(chunk | {"choices": [chunk["choices"][0] | {"finish_reason": "stop"}]})


def test_stop_strings_end_the_text(api):
    text = api.generate("Create a new", max_new_tokens=32)
    stop = text.split()[3]
    assert api.generate("Create a new", max_new_tokens=32, stop=stop) == text[:text.index(stop)]


def test_tokenize_detokenize(api):
    ids = api.tokenize("Create a new list")
    assert ids[0] == api.tokenize("")[0] and api.detokenize(ids[1:]) == "Create a new list"
    assert api.tokenize("Create a new list", add_bos=False) == ids[1:]


def test_calls_from_several_threads(api):
    want = {p: api.generate(p, max_new_tokens=16) for p in PROMPTS[:4]}
    got: dict[str, str] = {}
    threads = [threading.Thread(target=lambda p=p: got.__setitem__(p, api.generate(p, max_new_tokens=16)))
               for p in PROMPTS[:4]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == want


def test_bad_input_raises_the_documented_errors(api, engine_lib, tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        BitNetModel.from_pretrained(tmp_path / "missing.gguf")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(200))
    with pytest.raises(ModelLoadError) as e:
        BitNetModel.from_pretrained(corrupt)
    assert str(corrupt) in str(e.value) or "GGUF" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        BitNetModel.from_pretrained(tmp_path / "empty")
    for kwargs, match in (({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": -1}, "temperature"),
                          ({"top_p": 0}, "top_p"), ({"max_tokens": 4}, "unknown generation argument 'max_tokens'")):
        with pytest.raises(InvalidArgumentError, match=match):
            api.generate("Open", **kwargs)
    with pytest.raises(InvalidArgumentError, match="n_threads"):
        BitNetModel.from_pretrained(api.path, n_threads=-1)
    with pytest.raises(InvalidArgumentError, match="list of prompts"):
        api.batch_generate("Open")
    with pytest.raises(InvalidArgumentError, match="role"):
        api.chat([{"role": "user"}])
    with pytest.raises(ContextLengthError, match="context"):
        api.generate("word " * 600)
    history = [{"role": "user", "content": "hi"}]
    with pytest.raises(ContextLengthError):
        api.chat(history, "word " * 600)
    assert history == [{"role": "user", "content": "hi"}]  # the refused message was withdrawn
    for cls in (ModelLoadError, InvalidArgumentError, ContextLengthError):
        assert issubclass(cls, BitnetError)


def test_closed_model_refuses_work(engine_lib, shipped_gguf):
    with BitNetModel(shipped_gguf, n_threads=1, context_length=64) as model:
        assert model.generate("Open", max_new_tokens=2)
    with pytest.raises(BitnetError, match="closed"):
        model.generate("Open")


def test_checkpoint_dir_is_converted_once(engine_lib, tiny_packed, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_packed, ckpt, ignore=shutil.ignore_patterns("*.gguf"))
    with BitNetModel.from_pretrained(ckpt, n_threads=1) as model:
        first = model.generate("hello", max_new_tokens=8)
    gguf = ckpt / "ggml-model-i2_s.gguf"
    stamp = gguf.stat().st_mtime_ns
    with BitNetModel.from_pretrained(ckpt, n_threads=1) as model:
        assert model.generate("hello", max_new_tokens=8) == first
    assert gguf.stat().st_mtime_ns == stamp  # loaded, not converted again


def test_hf_id_is_downloaded_and_converted(engine_lib, tiny_packed, tmp_path):
    """A Hugging Face id through the fake hub (in a subprocess: huggingface_hub reads HF_ENDPOINT
    when imported)."""
    from fake_hub import FakeHub

    code = ("from bitnet import BitNetModel\n"
            "m = BitNetModel.from_pretrained('microsoft/bitnet-b1.58-2B-4T', n_threads=1)\n"
            "print(m.path); print(repr(m.generate('hello', max_new_tokens=4)))\n")
    with FakeHub({"microsoft/bitnet-b1.58-2B-4T": tiny_packed}) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "BITNET_MODELS_DIR": str(tmp_path / "models"),
               "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO_ROOT)}
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == str(tmp_path / "models" / "BitNet-b1.58-2B-4T" / "ggml-model-i2_s.gguf")


# ---- the README's Python section -------------------------------------------------------------------

def readme_examples() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("\n## Python\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 2, "README's Python section lost its examples"
    return blocks


def shipped_model_copy(where: Path) -> Path:
    """A folder where the README's relative path models/bitnet-tiny names a copy of the shipped
    checkpoint (the examples convert it there, not in the clone)."""
    shutil.copytree(DEFAULT_MODEL_DIR, where / "models" / "bitnet-tiny", ignore=shutil.ignore_patterns("*.gguf"))
    return where


def test_readme_examples_run(engine_lib, engine_bin, shipped_gguf, tmp_path):
    cwd = shipped_model_copy(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first, *rest = readme_examples()
    res = subprocess.run([sys.executable, "-c", first], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == cli_text(engine_bin, shipped_gguf, "Create a new", 32) + "\n"
    for code in rest:
        res = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, f"{code}\n{res.stderr}"


def test_pip_install_from_a_git_url(engine_bin, shipped_gguf, tmp_path):
    """A new virtual environment, `pip install git+file://REPO@COMMIT` (pip clones the commit, as
    for the README's git URL, and builds the wheel: a real, not editable, install), then the
    README's first example from elsewhere: the package and its engine come from the environment,
    and the text is bitnet-cli's. The new environment sees this one's packages (a .pth file), so
    nothing is downloaded; the build runs without isolation for the same reason
    (scikit-build-core is in requirements-dev.txt)."""
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "parent-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("BITNET_BUILD_DIR", "PYTHONPATH")}
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-build-isolation",
                          f"git+file://{REPO_ROOT}@{commit}"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    cwd = shipped_model_copy(tmp_path / "elsewhere")
    where = subprocess.run([str(py), "-c", "import bitnet, bitnet.bindings as b; print(bitnet.__file__); "
                            "print(b.default_library_path())"], cwd=cwd, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(site) for line in where.stdout.splitlines()), where.stdout
    assert Path(site, "bitnet", "bin", "bitnet-cli").is_file()
    assert not list(Path(site, "bitnet").rglob("test_*")), "the C++ test programs are not part of the package"
    res = subprocess.run([str(py), "-c", readme_examples()[0]], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == cli_text(engine_bin, shipped_gguf, "Create a new", 32) + "\n"
