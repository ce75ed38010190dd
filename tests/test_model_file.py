"""A model file that changes under a loaded model, and --mmap / --no-mmap.

The server reads its model into memory by default (--no-mmap): a served file rewritten in place
(`cp half.gguf served.gguf` truncates it, then writes) must not kill it (with a map: SIGBUS, exit
135) nor change its answers (with a map, a same-size rewrite shows its new bytes), and the change is
logged as a warning. With --mmap a file replaced by another one is harmless and also warned about.
--no-mmap must give the very bits --mmap gives, through the bindings and bitnet-cli.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

PROMPT = "Create a new"


@pytest.fixture(scope="module")
def gguf(shipped_gguf):
    return shipped_gguf


def _complete(url: str) -> str:
    from utils.load_test import request

    status, body = request(url, "POST", "/v1/completions",
                           {"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "ignore_eos": True})
    assert status == 200, body
    return body["choices"][0]["text"]


def _wait_for_log(log, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text()}"
        time.sleep(0.05)
    return log.read_text()


def test_no_mmap_gives_the_same_logits(engine_lib, gguf):
    from bitnet.bindings import Context, Model

    logits = []
    for use_mmap in (True, False):
        with Model(gguf, use_mmap=use_mmap) as m, Context(m, n_threads=1) as ctx:
            logits.append(ctx.decode(m.tokenize(PROMPT, add_bos=True), logits_all=True))
    assert np.array_equal(logits[0], logits[1])


def test_cli_no_mmap_gives_the_same_text(engine_bin, gguf):
    def run(*flags):
        r = subprocess.run([str(engine_bin / "bitnet-cli"), "-m", str(gguf), "-p", PROMPT, "-n", "32", "--temp", "0",
                            "--ignore-eos", "-t", "1", *flags], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert run("--no-mmap") == run() == run("--mmap")


def test_served_file_overwritten_in_place(engine_lib, gguf, tmp_path):
    """Truncated to half, then rewritten with the same size and other bytes, while requests run:
    the server (default --no-mmap) answers every request as before and warns."""
    from utils.load_test import local_server

    served = tmp_path / "served.gguf"
    shutil.copyfile(gguf, served)
    original = gguf.read_bytes()
    half = tmp_path / "half.gguf"
    half.write_bytes(original[:len(original) // 2])
    # The same size, every tensor byte of the second half changed: served from a map, the answers change.
    changed = original[:len(original) // 2] + bytes(b ^ 0x5A for b in original[len(original) // 2:])
    log = tmp_path / "server.log"
    with local_server(served, ["-t", "1", "--parallel", "2"], log_path=log) as url:
        want = _complete(url)
        answers, stop = [], threading.Event()

        def traffic():
            while not stop.is_set():
                answers.append(_complete(url))

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            time.sleep(0.3)
            shutil.copyfile(half, served)  # what `cp half.gguf served.gguf` does: truncate, write
            time.sleep(0.3)
            assert _complete(url) == want
            _wait_for_log(log, f"(it was rewritten in place: {len(original)} -> {len(original) // 2} bytes)")
            with open(served, "r+b") as f:  # the same size again, other bytes
                f.write(changed)
            time.sleep(0.3)
            assert _complete(url) == want
        finally:
            stop.set()
            worker.join()
        text = _wait_for_log(log, "(it was rewritten in place):")
    assert answers and all(a == want for a in answers), {a for a in answers if a != want}
    assert os.path.getsize(served) == len(original)
    # Two changes, or more when a check fell between the truncation and the write.
    warnings = [ln for ln in text.splitlines() if "changed on disk since it was loaded" in ln]
    assert len(warnings) >= 2, text
    assert all("keeps serving the weights it read at start" in ln for ln in warnings), warnings
    assert "Traceback" not in text


def test_mmap_server_warns_of_a_replaced_file(engine_lib, gguf, tmp_path):
    """With --mmap the server says what the flag risks; a file replaced by another one (a rename over
    it) leaves the mapped one in place: the answers stay, and the change is logged."""
    from utils.load_test import local_server

    served = tmp_path / "served.gguf"
    shutil.copyfile(gguf, served)
    log = tmp_path / "server.log"
    with local_server(served, ["-t", "1", "--mmap"], log_path=log) as url:
        assert "do not rewrite or truncate it in place" in log.read_text()
        want = _complete(url)
        other = tmp_path / "other.gguf"
        other.write_bytes(gguf.read_bytes()[:1000])
        os.replace(other, served)
        assert _complete(url) == want
        text = _wait_for_log(log, "replaced by another file")
    assert "with --mmap the server keeps the old file mapped" in text
