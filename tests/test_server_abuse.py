"""The server (run_inference_server.py, utils/server/) against clients that misbehave: bursts past
the queue, bodies too large or too slow, request heads too large or too slow, too many connections,
chats that forge turns with special-token text, and failures inside the scheduler. Raw sockets
where the HTTP itself is the point; all traffic to 127.0.0.1; every loop bounded in count.
"""

from __future__ import annotations

import contextlib
import json
import select
import shutil
import socket
import threading
import time
import urllib.parse

import pytest

from utils.common import DEFAULT_MODEL_DIR

BODY_LIMIT = 64 << 10
HEAD_LIMIT = 8 << 10
MAX_CONNECTIONS = 48


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    from conftest import convert_to

    ckpt = tmp_path_factory.mktemp("abuse") / DEFAULT_MODEL_DIR.name
    shutil.copytree(DEFAULT_MODEL_DIR, ckpt, ignore=shutil.ignore_patterns("*.gguf", ".cache"))
    return convert_to(ckpt, "i2_s")


@pytest.fixture(scope="module")
def model(engine_lib, gguf):
    from utils.bindings import Model

    with Model(gguf) as m:
        yield m


def _start(gguf, tmp_path_factory, args):
    from utils.load_test import local_server

    return local_server(gguf, args, log_path=tmp_path_factory.mktemp("abuse-log") / "server.log")


@pytest.fixture(scope="module")
def busy(engine_lib, gguf, tmp_path_factory):
    """4 slots, 8 places in the queue, long contexts (a request can run for seconds), small limits."""
    with _start(gguf, tmp_path_factory, ["--parallel", "4", "--queue-size", "8", "-c", "4096", "-t", "1",
                                         "--max-body-size", str(BODY_LIMIT), "--max-header-size", str(HEAD_LIMIT),
                                         "--max-connections", str(MAX_CONNECTIONS)]) as url:
        yield url


@pytest.fixture(scope="module")
def strict(engine_lib, gguf, tmp_path_factory):
    """Heads and bodies must arrive within 1 s."""
    with _start(gguf, tmp_path_factory, ["--parallel", "1", "-c", "256", "-t", "1", "--header-timeout", "1",
                                         "--body-timeout", "1"]) as url:
        yield url


# ---- raw HTTP ---------------------------------------------------------------------------------

def _connect(url: str, timeout: float = 30.0) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    assert u.hostname == "127.0.0.1"
    return socket.create_connection((u.hostname, u.port), timeout=timeout)


def _read_response(sock: socket.socket, limit: int = 1 << 20) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one response read until the connection closes or its
    Content-Length is complete; status 0 when the server closed without answering."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            if "content-length" in headers and len(body) >= int(headers["content-length"]):
                break
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return 0, {}, data
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), dict(line.lower().split(": ", 1) for line in lines[1:]), body


def _openai_error(body: bytes, code: str) -> dict:
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], err
    assert err["code"] == code, err
    return err


def _post_head(path: str, length: int | None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}{extra}"
            "\r\n").encode()


def _post(url: str, path: str, body: dict) -> tuple[int, dict]:
    from utils.load_test import request

    return request(url, "POST", path, body)


def _healthy(url: str) -> bool:
    from utils.load_test import request

    return request(url, "GET", "/health")[0] == 200


# ---- the queue --------------------------------------------------------------------------------

class _FakeEngine:
    """A BatchEngine stand-in for scheduler tests: logits that always pick token `pick`; `fail`
    (an exception) raised by the next steps while set."""

    def __init__(self, n_slots: int = 2, n_ctx: int = 64, n_vocab: int = 16, pick: int = 5):
        self.n_slots, self.n_ctx, self.n_vocab, self.pick = n_slots, n_ctx, n_vocab, pick
        self.lengths = [0] * n_slots
        self.fail: Exception | None = None
        self.fail_free: Exception | None = None

    def step(self, entries):
        import numpy as np

        if self.fail is not None:
            raise self.fail
        out = {}
        for e in entries:
            self.lengths[e.slot] += len(e.tokens)
            if e.want_logits:
                row = np.zeros(self.n_vocab, dtype=np.float32)
                row[self.pick] = 1.0
                out[e.slot] = row
        return out

    def free(self, slot):
        if self.fail_free is not None:
            raise self.fail_free
        self.lengths[slot] = 0

    def n_past(self, slot):
        return self.lengths[slot]

    def close(self):
        pass


class _FakeModel:
    def is_eog(self, token):
        return False

    def token_to_piece(self, token):
        return b"x"


def test_queue_bound_holds_before_the_scheduler_runs(engine_lib):
    """Submits to a scheduler whose thread has not started (the state of an idle server hit by a
    burst, before its thread hands out slots): n_slots + queue_size are taken, the rest refused."""
    from utils.server.scheduler import QueueFull, Request, SamplingParams, Scheduler

    sched = Scheduler(_FakeEngine(n_slots=4), _FakeModel(), queue_size=8)
    accepted, refused = 0, []
    for _ in range(20):
        try:
            sched.submit(Request([1, 2], SamplingParams(max_tokens=3), lambda ev: None))
            accepted += 1
        except QueueFull as e:
            refused.append(str(e))
    assert (accepted, len(refused)) == (12, 8)
    assert "queue of 8" in refused[0]


# ---- failures inside the server ---------------------------------------------------------------

def _collector():
    """An on_event callback and the list of events it keeps, with an Event set at the last one."""
    from utils.server.scheduler import Failed, Finished

    events, done = [], threading.Event()

    def on_event(ev):
        events.append(ev)
        if isinstance(ev, (Finished, Failed)):
            done.set()
    return on_event, events, done


def test_scheduler_survives_a_failed_step(engine_lib):
    """Any exception in a step (not only the engine's BitnetError) fails that step's requests with
    Failed; the next request runs."""
    from utils.server.scheduler import Failed, Finished, Request, SamplingParams, Scheduler

    engine = _FakeEngine()
    sched = Scheduler(engine, _FakeModel(), queue_size=2)
    sched.start()
    try:
        engine.fail = ValueError("injected")
        on_event, events, done = _collector()
        sched.submit(Request([1, 2, 3], SamplingParams(max_tokens=4), on_event))
        assert done.wait(30)
        assert isinstance(events[-1], Failed) and "injected" in events[-1].message
        engine.fail = None
        on_event, events, done = _collector()
        sched.submit(Request([1, 2, 3], SamplingParams(max_tokens=4), on_event))
        assert done.wait(30)
        assert events[-1] == Finished("length", 3, 4)
        assert sched.failure is None and engine.lengths == [0, 0]
    finally:
        sched.close()


def test_scheduler_that_cannot_go_on_fails_everything_and_says_so(engine_lib):
    """A failure the loop cannot recover from (freeing the failed step's slot fails too): the
    running and waiting requests get Failed, submits raise Unavailable, `failure` says why."""
    from utils.server.scheduler import Failed, Request, SamplingParams, Scheduler, Unavailable

    engine = _FakeEngine(n_slots=1)
    sched = Scheduler(engine, _FakeModel(), queue_size=2)
    engine.fail, engine.fail_free = ValueError("injected"), RuntimeError("slot state lost")
    got = [_collector() for _ in range(2)]
    for on_event, _, _ in got:
        sched.submit(Request([1, 2], SamplingParams(max_tokens=4), on_event))
    sched.start()
    try:
        for _, events, done in got:
            assert done.wait(30)
            assert len(events) == 1 and isinstance(events[0], Failed)
        assert "slot state lost" in sched.failure
        with pytest.raises(Unavailable, match="slot state lost"):
            sched.submit(Request([1], SamplingParams(), lambda ev: None))
    finally:
        sched.close()
