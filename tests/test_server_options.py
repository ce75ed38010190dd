"""run_inference_server.py's KV cache flags (-ctk/-ctv/-fa) and its context rule, on the shipped
model (trained on 256 tokens): -c 0, the default, is the training context without a word; a larger
-c works and is warned about, in the words of the other tools; a cache the engine refuses is one
error line and exit code 1, before anything is served.
"""

from __future__ import annotations

import subprocess
import sys

import gguf_craft as gc
from bitnet.common import REPO_ROOT

WARNING = "warning: a context of 512 tokens is longer than the 256 the model was trained on"


def _complete(url: str) -> str:
    from utils.load_test import request

    status, body = request(url, "POST", "/v1/completions",
                           {"prompt": "Create a new", "max_tokens": 8, "temperature": 0})
    assert status == 200, body
    return body["choices"][0]["text"]


def test_default_context_is_the_training_context(engine_lib, shipped_gguf, tmp_path):
    from utils.load_test import local_server

    log = tmp_path / "server.log"
    with local_server(shipped_gguf, ["-t", "1"], log_path=log) as url:
        assert _complete(url)
    text = log.read_text()
    assert "slots of 256 tokens" in text, text
    assert "warning:" not in text and "note: context" not in text, text


def test_cache_types_and_a_longer_context(engine_lib, shipped_gguf, tmp_path):
    from utils.load_test import local_server

    log = tmp_path / "server.log"
    with local_server(shipped_gguf, ["-t", "1", "-c", "512", "-ctk", "q8_0", "-ctv", "f16"], log_path=log) as url:
        assert _complete(url)
    text = log.read_text()
    assert "slots of 512 tokens" in text, text
    assert [ln for ln in text.splitlines() if ln.startswith(WARNING)], text


def test_exact_attention_needs_an_f32_cache(engine_lib, shipped_gguf):
    from utils.load_test import free_port

    r = subprocess.run([sys.executable, str(REPO_ROOT / "run_inference_server.py"), "-m", str(shipped_gguf),
                        "-t", "1", "-fa", "off", "-ctk", "f16", "--port", str(free_port())],
                       capture_output=True, text=True, timeout=120)
    gc.assert_one_line_error(r, "-fa off", "-ctk f32 -ctv f32")
    assert r.stdout == ""
