"""The OpenAI-compatible server (run_inference_server.py), started on 127.0.0.1 on the shipped model
and driven with the official openai client and plain HTTP: its text against the engine's own greedy
decoding through the bindings, streams against non-streamed answers, 16 concurrent requests against
the same requests made alone, stop strings, bad input, disconnects, the bounded queue, the API key.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from bitnet.common import DEFAULT_MODEL_DIR

openai = pytest.importorskip("openai")

CHAT_SYSTEM = "Answer in one line."  # the main server's -p
KEY = "test-key-123"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    """The shipped model converted to GGUF in a temporary copy (the checkout stays untouched)."""
    from conftest import convert_to

    ckpt = tmp_path_factory.mktemp("server") / DEFAULT_MODEL_DIR.name
    shutil.copytree(DEFAULT_MODEL_DIR, ckpt, ignore=shutil.ignore_patterns("*.gguf", ".cache"))
    return convert_to(ckpt, "i2_s")


@pytest.fixture(scope="module")
def model(engine_lib, gguf):
    from bitnet.bindings import Model

    with Model(gguf) as m:
        yield m


def _start(gguf, tmp_path_factory, args):
    from utils.load_test import local_server

    return local_server(gguf, args, log_path=tmp_path_factory.mktemp("server-log") / "server.log")


@pytest.fixture(scope="module")
def server(engine_lib, gguf, tmp_path_factory):
    """4 slots, prompts evaluated in chunks of 8 tokens, room for all the concurrent requests."""
    with _start(gguf, tmp_path_factory, ["--parallel", "4", "--queue-size", "32", "-c", "256", "-t", "1",
                                         "-b", "8", "-p", CHAT_SYSTEM]) as url:
        yield url


@pytest.fixture(scope="module")
def tight(engine_lib, gguf, tmp_path_factory):
    """1 slot, 1 place in the queue, a long context (a request can run for seconds), an API key."""
    with _start(gguf, tmp_path_factory, ["--parallel", "1", "--queue-size", "1", "-c", "4096", "-t", "1",
                                         "--api-key", KEY]) as url:
        yield url


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _post(url: str, path: str, body, headers: dict | None = None) -> tuple[int, dict]:
    from utils.load_test import request

    return request(url, "POST", path, body if isinstance(body, (dict, bytes)) else body.encode(), headers)


def _metrics(url: str, headers: dict | None = None) -> dict[str, float]:
    """The server's Prometheus samples: {"name{labels}": value}."""
    from utils.load_test import request

    status, text = request(url, "GET", "/metrics", headers=headers)
    assert status == 200, text
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r'bitnet_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+', line), line
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _wait_for(pred, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _reference(model, tokens: list[int], n: int) -> tuple[str, str]:
    """The engine's greedy continuation through the bindings, without the server: (text, finish
    reason)."""
    from bitnet.bindings import Context

    with Context(model, n_ctx=256, n_threads=1) as ctx:
        logits, out = ctx.decode(tokens)[-1], []
        while len(out) < n:
            t = int(logits.argmax())
            if model.is_eog(t):
                return model.detokenize(out), "stop"
            out.append(t)
            logits = ctx.decode([t])[-1]
    return model.detokenize(out), "length"


def test_openai_client_matches_the_engine(server, model):
    client = _client(server)
    assert [m.id for m in client.models.list()] == [DEFAULT_MODEL_DIR.name]

    prompt = "Create a new"
    want, reason = _reference(model, model.tokenize(prompt, add_bos=True), 24)
    r = client.completions.create(model=DEFAULT_MODEL_DIR.name, prompt=prompt, max_tokens=24, temperature=0)
    assert (r.choices[0].text, r.choices[0].finish_reason) == (want, reason)
    assert r.usage.prompt_tokens == len(model.tokenize(prompt, add_bos=True))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(client.completions.create(model=DEFAULT_MODEL_DIR.name, prompt=prompt, max_tokens=24,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == want
    assert [c.choices[0].finish_reason for c in chunks][-1] == reason

    # Chat: the server's -p is the system message; the template is the engine's.
    messages = [{"role": "user", "content": "How do I open a file?"}]
    text = model.chat_apply([{"role": "system", "content": CHAT_SYSTEM}] + messages)
    tokens = model.tokenize(text, add_bos=False, parse_special=True)
    want, reason = _reference(model, tokens, 20)
    r = client.chat.completions.create(model=DEFAULT_MODEL_DIR.name, messages=messages, max_tokens=20,
                                       temperature=0)
    assert (r.choices[0].message.role, r.choices[0].message.content) == ("assistant", want)
    assert r.choices[0].finish_reason == reason
    assert r.usage.prompt_tokens == len(tokens)
    chunks = list(client.chat.completions.create(model=DEFAULT_MODEL_DIR.name, messages=messages, max_tokens=20,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert chunks[-2].choices[0].finish_reason == reason
    # The same conversation again: all but its last token come from the slot's cache this time.
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert chunks[-1].choices == [] and [getattr(chunks[-1].usage, k) for k in counts] == \
        [getattr(r.usage, k) for k in counts]
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == len(tokens) - 1
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_wire_format(server):
    """The raw stream: data lines of JSON, blank lines between events, ending with [DONE]."""
    u = urllib.parse.urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", "/v1/completions", json.dumps({"prompt": "Return the", "max_tokens": 5, "stream": True,
                                                        "ignore_eos": True}))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    events = resp.read().decode().split("\n\n")
    conn.close()
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["length"]


def test_concurrent_requests_match_each_alone(server):
    """16 greedy streams and 4 seeded sampled ones at once on 4 slots (requests wait, join and leave
    the batch; prompts of up to 25 tokens go in chunks of 8 between the others' steps): each gives
    exactly what it gives alone."""
    client = _client(server)
    words = ["the", "file", "object", "is", "returned", "by", "open", "and", "the", "list", "of"]
    reqs = [{"prompt": " ".join(words[:1 + i % 11]) * (1 + i // 8), "max_tokens": 12 + i, "temperature": 0}
            for i in range(16)]
    reqs += [{"prompt": " ".join(words[:3 + i]), "max_tokens": 16, "temperature": 0.9, "top_p": 0.9, "seed": i}
             for i in range(4)]

    def run(kw) -> tuple[str, str]:
        chunks = list(client.completions.create(model=DEFAULT_MODEL_DIR.name, stream=True, **kw))
        return "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason

    alone = [run(kw) for kw in reqs]
    together: list = [None] * len(reqs)

    def worker(i):
        together[i] = run(reqs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert len({text for text, _ in alone}) > 10  # the requests really differ


def test_stop_strings_never_leak(server, model):
    prompt = "Create a new"
    full, _ = _reference(model, model.tokenize(prompt, add_bos=True), 40)
    client = _client(server)
    # A stop string starting mid-token and ending in a later token, and one that never occurs.
    stop = full[10:18]
    want = full[:full.index(stop)]
    for s in (stop, [stop, "\u2603never"]):
        chunks = list(client.completions.create(model=DEFAULT_MODEL_DIR.name, prompt=prompt, max_tokens=40,
                                                temperature=0, stop=s, stream=True))
        assert "".join(c.choices[0].text for c in chunks) == want
        assert chunks[-1].choices[0].finish_reason == "stop"
    r = client.completions.create(model=DEFAULT_MODEL_DIR.name, prompt=prompt, max_tokens=40, temperature=0,
                                  stop="\u2603never")
    assert r.choices[0].text == full and r.choices[0].finish_reason == "length"


def test_stop_filter_holds_back_prefixes():
    from bitnet.server.scheduler import StopFilter

    f = StopFilter(["abc", "xy"])
    assert f.push("123a") == ("123", False)
    assert f.push("b") == ("", False)
    assert f.push("d x") == ("abd ", False)
    assert f.push("y tail") == ("", True)
    f = StopFilter(["abc"])
    assert f.push("zab") == ("z", False) and f.flush() == "ab"


@pytest.mark.parametrize("path, body, status, param, code", [
    ("/v1/completions", '{"prompt": "x", ', 400, None, "invalid_json"),
    ("/v1/completions", "[1, 2]", 400, None, "invalid_json"),
    ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model", "model_not_found"),
    ("/v1/completions", {"prompt": "word " * 300}, 400, "prompt", "context_length_exceeded"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 300}]}, 400, "messages",
     "context_length_exceeded"),
    ("/v1/completions", {"prompt": "x", "max_tokens": -5}, 400, "max_tokens", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "ten"}, 400, "max_tokens", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "temperature": 2.5}, 400, "temperature", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "stop": ["a", 3]}, 400, "stop[1]", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, 400, "stream", "invalid_value"),
    ("/v1/completions", {"prompt": [1, 99999]}, 400, "prompt", "invalid_value"),
    ("/v1/completions", {"max_tokens": 3}, 400, "prompt", "missing_parameter"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role",
     "invalid_value"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages", "invalid_value"),
    ("/v1/completions", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "invalid_value"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": None}]}, 400, "messages[0].content",
     "invalid_value"),
    ("/v1/chat/completions", {"messages": [{"role": "user"}]}, 400, "messages[0].content", "invalid_value"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]},
     400, "messages[1].content", "invalid_value"),
    ("/v1/completions", {"prompt": [[1, 2], [1, 99999]]}, 400, "prompt[1]", "invalid_value"),
    ("/v1/completions", {"prompt": ["Create a new", "word " * 300]}, 400, "prompt[1]", "context_length_exceeded"),
])
def test_bad_requests_get_openai_errors(server, path, body, status, param, code):
    got, answer = _post(server, path, body)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["type"] == "invalid_request_error" and answer["error"]["message"]
    assert (answer["error"]["param"], answer["error"]["code"]) == (param, code)
    # ... and the server goes on serving.
    ok, r = _post(server, "/v1/completions", {"prompt": "Create a new", "max_tokens": 2, "ignore_eos": True})
    assert ok == 200 and r["usage"]["completion_tokens"] == 2


def _open_stream(url: str, max_tokens: int = 4000) -> tuple[http.client.HTTPConnection, bytes]:
    """A long streaming request (past end-of-text) and its first event."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", "/v1/completions", json.dumps({"prompt": "Create a new", "max_tokens": max_tokens,
                                                        "ignore_eos": True, "stream": True}),
                 headers={"Authorization": f"Bearer {KEY}"})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp.readline()


@pytest.mark.parametrize("max_tokens, ignore_eos", [(1, False), (5, True), (60, False), (60, True)])
def test_completion_tokens_agree_with_bitnet_cli(server, engine_bin, gguf, max_tokens, ignore_eos):
    """The same greedy generation: the same text and the same token count as bitnet-cli's speed line,
    whether it ends at max_tokens or at <|end_of_text|> (not counted; this prompt reaches it after
    14 tokens), control tokens left out."""
    body = {"prompt": "Return the", "max_tokens": max_tokens, "temperature": 0, "ignore_eos": ignore_eos}
    status, r = _post(server, "/v1/completions", body)
    assert status == 200, r
    cli = subprocess.run([str(engine_bin / "bitnet-cli"), "-m", str(gguf), "-p", "Return the", "-n", str(max_tokens),
                          "--temp", "0", "-c", "256", "-t", "1", "--no-display-prompt",
                          *(["--ignore-eos"] if ignore_eos else [])], capture_output=True, text=True, check=True)
    n = int(re.search(r"generation: +(\d+) tokens? in", cli.stderr).group(1))
    assert r["usage"]["completion_tokens"] == n
    assert r["choices"][0]["text"] == cli.stdout.removesuffix("\n") and "<|" not in cli.stdout
    assert r["choices"][0]["finish_reason"] == ("length" if n == max_tokens else "stop")


def test_bad_request_messages_say_what_openai_says(server):
    status, answer = _post(server, "/v1/completions", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})
    assert status == 400 and "at most 4 stop sequences" in answer["error"]["message"], answer
    status, answer = _post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": None}]})
    assert status == 400 and "null is only allowed in an assistant message with tool_calls" in \
        answer["error"]["message"], answer


def test_null_content_of_an_assistant_tool_call_is_accepted(server):
    messages = [{"role": "user", "content": "Create a new"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "user", "content": "again"}]
    status, answer = _post(server, "/v1/chat/completions", {"messages": messages, "max_tokens": 2})
    assert status == 200, answer


def test_a_list_of_prompts_gets_a_choice_each(server, model):
    prompts = ["Create a new", "Return the", "The list"]
    alone = [_post(server, "/v1/completions", {"prompt": p, "max_tokens": 8, "temperature": 0})[1] for p in prompts]
    status, r = _post(server, "/v1/completions", {"prompt": prompts, "max_tokens": 8, "temperature": 0})
    assert status == 200, r
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    assert [c["text"] for c in r["choices"]] == [a["choices"][0]["text"] for a in alone]
    assert [c["finish_reason"] for c in r["choices"]] == [a["choices"][0]["finish_reason"] for a in alone]
    for key in ("prompt_tokens", "completion_tokens"):
        assert r["usage"][key] == sum(a["usage"][key] for a in alone)
    # token ids, as a list of lists, and the openai client's own batch call
    ids = [model.tokenize(p, add_bos=True) for p in prompts]
    status, by_ids = _post(server, "/v1/completions", {"prompt": ids, "max_tokens": 8, "temperature": 0})
    assert status == 200 and [c["text"] for c in by_ids["choices"]] == [c["text"] for c in r["choices"]]
    got = _client(server).completions.create(model=DEFAULT_MODEL_DIR.name, prompt=prompts, max_tokens=8, temperature=0)
    assert sorted((c.index, c.text) for c in got.choices) == [(c["index"], c["text"]) for c in r["choices"]]
    # streamed: every chunk names its choice; each choice's text is the same
    chunks = list(_client(server).completions.create(model=DEFAULT_MODEL_DIR.name, prompt=prompts, max_tokens=8,
                                                     temperature=0, stream=True,
                                                     stream_options={"include_usage": True}))
    texts = {i: "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i) for i in range(3)}
    assert [texts[i] for i in range(3)] == [c["text"] for c in r["choices"]]
    assert chunks[-1].usage.completion_tokens == r["usage"]["completion_tokens"]


def test_busy_port_is_one_error_line_before_the_model_loads(engine_lib, gguf):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "run_inference_server.py"),
                              "-m", str(gguf), "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and \
        len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "serving" not in res.stdout + res.stderr and "--port" in res.stderr


def test_disconnect_frees_the_slot(tight):
    auth = {"Authorization": f"Bearer {KEY}"}
    before = _metrics(tight, auth)["bitnet_requests_cancelled_total"]
    conn, first = _open_stream(tight)
    assert first.startswith(b"data: ")
    assert _metrics(tight, auth)["bitnet_slots_in_use"] == 1  # 4000 tokens take seconds
    conn.close()
    _wait_for(lambda: _metrics(tight, auth)["bitnet_slots_in_use"] == 0, "the slot to be freed")
    assert _metrics(tight, auth)["bitnet_requests_cancelled_total"] == before + 1


def test_full_queue_gets_503(tight):
    auth = {"Authorization": f"Bearer {KEY}"}
    running, _ = _open_stream(tight)
    u = urllib.parse.urlsplit(tight)
    waiting = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    quick = {"prompt": "x", "max_tokens": 2, "ignore_eos": True}
    waiting.request("POST", "/v1/completions", json.dumps(quick), headers=auth)
    _wait_for(lambda: _metrics(tight, auth)["bitnet_queue_depth"] == 1, "the second request to wait")
    status, answer = _post(tight, "/v1/completions", quick, auth)
    assert status == 503 and answer["error"]["code"] == "queue_full", answer
    running.close()  # frees the slot: the waiting request runs
    resp = waiting.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["usage"]["completion_tokens"] == 2
    waiting.close()
    m = _metrics(tight, auth)
    assert m['bitnet_requests_total{endpoint="/v1/completions",status="503"}'] >= 1
    assert m["bitnet_queue_depth"] == 0


def test_api_key(tight):
    from utils.load_test import request

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        status, answer = request(tight, "GET", "/v1/models", headers=headers)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        _client(tight, "wrong").models.list()
    assert [m.id for m in _client(tight, KEY).models.list()] == [DEFAULT_MODEL_DIR.name]
    assert request(tight, "GET", "/health")[0] == 200  # for load balancers: no key needed


def test_metrics_and_load_test(server):
    from click.testing import CliRunner

    from utils.load_test import main

    result = CliRunner().invoke(main, ["--url", server, "-s", "1,2", "-r", "1", "-n", "8", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["streams"], r["tokens"]) for r in rows] == [(1, 8), (2, 16)]
    assert all(r["aggregate_tps"] > 0 for r in rows)
    m = _metrics(server)
    assert m['bitnet_requests_total{endpoint="/v1/completions",status="200"}'] >= 4
    assert m["bitnet_generated_tokens_total"] >= 8 + 16 + 4
    assert m["bitnet_prompt_tokens_total"] > 0 and m["bitnet_generation_tokens_per_second"] > 0
    assert (m["bitnet_slots_total"], m["bitnet_slots_in_use"], m["bitnet_queue_depth"]) == (4, 0, 0)
