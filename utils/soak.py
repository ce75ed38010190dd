#!/usr/bin/env python3
"""Soak test of the OpenAI-compatible server: a bounded time of mixed traffic, with the failures
counted by kind and the server's memory before and after.

    python utils/soak.py -d 300                      # starts a server on the shipped model
    python utils/soak.py --url http://127.0.0.1:8080 --pid 1234 -d 600

``--workers`` clients run until ``--duration`` is over, each picking its next request at random
(seeded): a completion, a chat completion, a streamed completion read to the end, a stream the
client drops after its first chunks (a client that leaves), a burst of ``--burst`` requests sent
at once, or a malformed request (bad JSON, wrong types, out-of-range values, an unknown route, a
garbage request line). Counted apart:

- ok: a well-formed request answered 200 (its latency goes into p50/p99);
- rejected: a well-formed request refused because the server is busy (503, in bursts), or a
  malformed one answered 4xx as it should be: the server protecting itself, not failing;
- failures: anything else, by kind (a 5xx, a 4xx to a well-formed request, a 200 to a malformed
  one, a broken stream, a connection error, a timeout).

The server's resident memory (VmRSS of /proc/<pid>/status) is read before the first request and
after the last; with ``--url`` give ``--pid`` to have it. Exit code 1 when any request failed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `bitnet` and `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import DEFAULT_MODEL, BitnetError, display_path, run_cli
from utils.load_test import local_server_process

# Relative frequency of each kind of traffic.
MIX = {"completion": 4, "chat": 3, "stream": 3, "disconnect": 2, "burst": 1, "malformed": 3}
PROMPTS = ["The capital of France is", "Once upon a time", "def fib(n):", "Ünïcödé 日本語 🙂", " "]
TIMEOUT_S = 120.0


@dataclass
class SoakReport:
    duration_s: float
    requests: int = 0
    ok: int = 0
    rejected: Counter = field(default_factory=Counter)  # "<kind> <status>" -> count
    failures: Counter = field(default_factory=Counter)  # "<kind>: <what>" -> count
    latencies_ms: list[float] = field(default_factory=list)
    rss_start_kb: int | None = None
    rss_end_kb: int | None = None

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, int(q * len(s)))]

    def summary(self) -> dict:
        d = asdict(self)
        del d["latencies_ms"]
        d.update(rejected=dict(self.rejected), failures=dict(self.failures),
                 p50_ms=self.percentile(0.50), p99_ms=self.percentile(0.99))
        return d


def rss_kb(pid: int | None) -> int | None:
    """VmRSS of process pid in kB, or None (no pid, or the process is gone)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Client:
    """One worker's requests. Each method returns the HTTP status (or raises OSError/ValueError
    for a connection that broke)."""

    def __init__(self, url: str, rng: random.Random, api_key: str | None):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.rng = u.hostname, u.port, rng
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)

    def _post(self, path: str, body: bytes) -> int:
        conn = self._conn()
        try:
            conn.request("POST", path, body=body, headers=self.headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 200:
                json.loads(data)  # a 200 must carry a whole JSON body
            return resp.status
        finally:
            conn.close()

    def _gen_params(self) -> dict:
        return {"max_tokens": self.rng.randint(1, 24), "temperature": self.rng.choice([0, 0.7, 1.2]),
                "seed": self.rng.randint(0, 1000)}

    def completion(self) -> int:
        body = {"prompt": self.rng.choice(PROMPTS), **self._gen_params()}
        return self._post("/v1/completions", json.dumps(body).encode())

    def chat(self) -> int:
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": self.rng.choice(PROMPTS)}]
        return self._post("/v1/chat/completions", json.dumps({"messages": msgs, **self._gen_params()}).encode())

    def stream(self, drop_after: int | None = None) -> int:
        """A streamed completion, read to [DONE] (or dropped after drop_after data lines)."""
        body = {"prompt": self.rng.choice(PROMPTS), "stream": True, **self._gen_params()}
        body["max_tokens"] = 32 if drop_after else body["max_tokens"]
        conn = self._conn()
        try:
            conn.request("POST", "/v1/completions", body=json.dumps(body).encode(), headers=self.headers)
            resp = conn.getresponse()
            if resp.status != 200:
                resp.read()
                return resp.status
            seen, done = 0, False
            for line in resp:
                if not line.startswith(b"data: "):
                    continue
                if line.strip() == b"data: [DONE]":
                    done = True
                    break
                if "error" in json.loads(line[6:]):
                    raise ValueError("the stream carried an error")
                seen += 1
                if drop_after is not None and seen >= drop_after:
                    # Leave without reading the rest: the connection is reset under the server.
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    return 200
            if not done:
                raise ValueError("the stream ended without [DONE]")
            return 200
        finally:
            conn.close()

    def malformed(self) -> tuple[str, int]:
        """One malformed request: (its name, the status)."""
        cases = {
            "bad-json": ("/v1/completions", b'{"prompt": "hi", '),
            "not-an-object": ("/v1/completions", b'[1, 2, 3]'),
            "no-prompt": ("/v1/completions", b'{"max_tokens": 4}'),
            "wrong-type": ("/v1/completions", b'{"prompt": 42, "max_tokens": "many"}'),
            "negative-max-tokens": ("/v1/completions", b'{"prompt": "hi", "max_tokens": -5}'),
            "nan-temperature": ("/v1/completions", b'{"prompt": "hi", "temperature": NaN}'),
            "bad-messages": ("/v1/chat/completions", b'{"messages": [{"role": 7}]}'),
            "binary-garbage": ("/v1/completions", bytes(self.rng.randrange(256) for _ in range(2048))),
            "unknown-route": ("/v1/nothing-here", b"{}"),
        }
        name = self.rng.choice([*cases, "garbage-request-line"])
        if name == "garbage-request-line":
            return name, self._raw(b"GARBAGE \x00\xff HTTP/9.9\r\n\r\n")
        path, body = cases[name]
        return name, self._post(path, body)

    def _raw(self, data: bytes) -> int:
        """Status of the answer to raw bytes (0: the server closed without one)."""
        with socket.create_connection((self.host, self.port), timeout=TIMEOUT_S) as s:
            s.sendall(data)
            head = s.recv(64)
        parts = head.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else 0


def soak(url: str, duration: float, workers: int = 4, burst: int = 12, seed: int = 0,
         pid: int | None = None, api_key: str | None = None) -> SoakReport:
    """Mixed traffic against the server at url for `duration` seconds (see the module docstring)."""
    report = SoakReport(duration_s=duration, rss_start_kb=rss_kb(pid))
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def record(kind: str, outcome: int | Exception, t0: float, malformed: str | None = None) -> None:
        with lock:
            report.requests += 1
            if isinstance(outcome, Exception):
                report.failures[f"{kind}: {type(outcome).__name__}"] += 1
            elif malformed is not None:
                if 400 <= outcome < 500:
                    report.rejected[f"malformed {outcome}"] += 1
                else:
                    report.failures[f"malformed {malformed}: answered {outcome}"] += 1
            elif outcome == 200:
                report.ok += 1
                if kind != "disconnect":
                    report.latencies_ms.append(1000 * (time.perf_counter() - t0))
            elif outcome == 503:
                report.rejected[f"{kind} 503"] += 1
            else:
                report.failures[f"{kind}: answered {outcome}"] += 1

    def one(client: Client, kind: str) -> None:
        t0 = time.perf_counter()
        try:
            if kind == "malformed":
                name, status = client.malformed()
                record(kind, status, t0, malformed=name)
                return
            call = {"completion": client.completion, "chat": client.chat, "stream": client.stream,
                    "disconnect": lambda: client.stream(drop_after=client.rng.randint(1, 3))}[kind]
            record(kind, call(), t0)
        except (OSError, ValueError, http.client.HTTPException) as e:
            record(kind, e, t0)

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        client = Client(url, rng, api_key)
        kinds, weights = list(MIX), list(MIX.values())
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind != "burst":
                one(client, kind)
                continue
            sub = [Client(url, random.Random(rng.random()), api_key) for _ in range(burst)]
            threads = [threading.Thread(target=one, args=(c, rng.choice(["completion", "chat", "stream"])))
                       for c in sub]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.rss_end_kb = rss_kb(pid)
    return report


def format_report(r: SoakReport) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    def mb(kb: int | None) -> str:
        return "-" if kb is None else f"{kb / 1024:.1f} MB"

    lines = [f"{r.requests} requests in {r.duration_s:g} s: {r.ok} ok, {sum(r.rejected.values())} rejected "
             f"as expected, {sum(r.failures.values())} failed",
             f"latency of ok requests: p50 {ms(r.percentile(0.5))}, p99 {ms(r.percentile(0.99))}",
             f"server RSS: {mb(r.rss_start_kb)} at start, {mb(r.rss_end_kb)} at end"]
    lines += [f"  rejected {k}: {v}" for k, v in sorted(r.rejected.items())]
    lines += [f"  FAILED {k}: {v}" for k, v in sorted(r.failures.items())]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default=None, help="Base URL of a running server  [default: start one on a free port]")
@click.option("--pid", type=int, default=None, help="Process id of the server at --url, for its RSS.")
@click.option("-m", "--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL,
              show_default="the shipped model's ggml-model-i2_s.gguf", help="Model for the server started here.")
@click.option("-d", "--duration", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds of traffic.")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Concurrent clients.")
@click.option("--burst", type=click.IntRange(min=1), default=12, show_default=True,
              help="Requests sent at once in a burst.")
@click.option("--parallel", type=click.IntRange(min=1), default=2, show_default=True,
              help="Slots of the server started here.")
@click.option("--queue-size", type=click.IntRange(min=0), default=4, show_default=True,
              help="Queue of the server started here (a burst beyond slots + queue is answered 503).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the traffic mix.")
@click.option("--api-key", envvar="BITNET_API_KEY", default=None, help="API key to send  [env: BITNET_API_KEY]")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def main(url, pid, model, duration, workers, burst, parallel, queue_size, seed, api_key, as_json) -> None:
    """Mixed traffic, disconnects, bursts and malformed requests against the server for a bounded time."""
    with contextlib.ExitStack() as stack:
        if url is None:
            if not model.is_file():
                raise BitnetError(f"model file {display_path(model)} not found: run python setup_env.py, or "
                                  "pass --url of a running server")
            args = ["--parallel", str(parallel), "--queue-size", str(queue_size), "-t", "1", "-c", "256"]
            if api_key:
                args += ["--api-key", api_key]
            url, proc = stack.enter_context(local_server_process(model, args))
            pid = proc.pid
        report = soak(url.rstrip("/"), duration, workers, burst, seed, pid, api_key)
    click.echo(json.dumps(report.summary(), indent=2) if as_json else format_report(report))
    if report.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    run_cli(main)
