#!/usr/bin/env python3
"""Load test of the OpenAI-compatible server: aggregate generation speed at several numbers of
concurrent streams.

    python utils/load_test.py                                   # starts a server on the shipped model
    python utils/load_test.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -t 4 -n 64
    python utils/load_test.py --url http://127.0.0.1:8080 --api-key KEY --json

For each level of concurrency (``--streams 1,4,16``) that many clients each make
``--requests`` streaming completions one after another (greedy, past end-of-text so every request
generates exactly ``-n`` tokens); tokens are counted from the server's usage report. Prints one
row per level: aggregate tokens/s (all tokens over the level's wall time), the mean speed one client
sees, and the mean time to first token. Without ``--url`` it starts run_inference_server.py on a
free port of 127.0.0.1 with ``--parallel`` = the largest level, and stops it at the end.

``local_server`` (that start-and-wait) is also what the tests use.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import click

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import DEFAULT_MODEL, DEFAULT_PROMPT, REPO_ROOT, BitnetError, display_path, run_cli



def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(model: Path, args: Sequence[str] = (), log_path: Path | None = None,
                 timeout: float = 60.0) -> Iterator[str]:
    """Runs run_inference_server.py -m model on a free port of 127.0.0.1 with extra ``args``, waits
    until /health answers and yields its base URL ("http://127.0.0.1:PORT"); stops it on exit. Its
    output goes to log_path (default: discarded). Raises BitnetError, with the tail of the log,
    when it exits or does not answer within timeout seconds."""
    with local_server_process(model, args, log_path, timeout) as (url, _):
        yield url


@contextlib.contextmanager
def local_server_process(model: Path, args: Sequence[str] = (), log_path: Path | None = None,
                         timeout: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """``local_server`` that also yields the server's process (utils/soak.py reads its memory)."""
    port = free_port()
    cmd = [sys.executable, str(REPO_ROOT / "run_inference_server.py"), "-m", str(model), "--port", str(port),
           *args]
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path or os.devnull, "w", encoding="utf-8"))
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = Path(log_path).read_text(encoding="utf-8")[-2000:] if log_path else ""
                    why = f"exited with code {proc.returncode}" if proc.poll() is not None else \
                        f"did not answer within {timeout:g} s"
                    raise BitnetError(f"the server ({' '.join(cmd)}) {why}\n{tail}")
                time.sleep(0.1)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        status, _ = request(url, "GET", "/health", timeout=1.0)
        return status == 200
    except OSError:
        return False


def request(url: str, method: str, path: str, body: dict | bytes | None = None,
            headers: dict | None = None, timeout: float = 60.0) -> tuple[int, dict | str]:
    """One HTTP request; returns (status, parsed JSON body, or the text when it is not JSON)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        return resp.status, json.loads(text)
    except json.JSONDecodeError:
        return resp.status, text


@dataclass
class StreamResult:
    tokens: int          # completion tokens (from the usage chunk)
    seconds: float       # request sent -> [DONE]
    first_token_s: float  # request sent -> first text


def stream_completion(url: str, prompt: str, max_tokens: int, api_key: str | None = None) -> StreamResult:
    """One greedy streaming completion of exactly max_tokens tokens (ignore_eos), timed."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    t0 = time.perf_counter()
    first = tokens = None
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise BitnetError(f"the server answered {resp.status}: {resp.read().decode('utf-8', 'replace')}")
        for line in resp:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise BitnetError(f"the server failed the request: {chunk['error']['message']}")
            if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    finally:
        conn.close()
    if tokens is None:
        raise BitnetError("the stream ended without a usage report: is this a run_inference_server.py server?")
    seconds = time.perf_counter() - t0
    return StreamResult(tokens, seconds, first if first is not None else seconds)


@dataclass
class LevelResult:
    streams: int
    requests: int
    tokens: int
    wall_s: float
    aggregate_tps: float   # all tokens / wall time
    per_stream_tps: float  # mean over requests of tokens / request time
    mean_ttft_ms: float


def run_level(url: str, streams: int, requests: int, prompt: str, max_tokens: int,
              api_key: str | None = None) -> LevelResult:
    """`streams` clients, each making `requests` streaming completions back to back."""
    results: list[StreamResult] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(requests):
            try:
                r = stream_completion(url, prompt, max_tokens, api_key)
            except (BitnetError, OSError, ValueError) as e:  # reported after the level, by the main thread
                with lock:
                    errors.append(e)
                return
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise BitnetError(f"{len(errors)} of {streams * requests} requests failed at {streams} streams: {errors[0]}")
    tokens = sum(r.tokens for r in results)
    return LevelResult(streams=streams, requests=len(results), tokens=tokens, wall_s=wall,
                       aggregate_tps=tokens / wall,
                       per_stream_tps=sum(r.tokens / r.seconds for r in results) / len(results),
                       mean_ttft_ms=1000 * sum(r.first_token_s for r in results) / len(results))


def format_table(rows: Sequence[LevelResult]) -> str:
    lines = ["| streams | requests | tokens | wall s | aggregate tok/s | per-stream tok/s | mean TTFT ms |",
             "|--------:|---------:|-------:|-------:|----------------:|-----------------:|-------------:|"]
    lines += [f"| {r.streams} | {r.requests} | {r.tokens} | {r.wall_s:.2f} | {r.aggregate_tps:.1f} | "
              f"{r.per_stream_tps:.1f} | {r.mean_ttft_ms:.0f} |" for r in rows]
    return "\n".join(lines)


def _levels(_ctx, _param, value: str) -> list[int]:
    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise click.BadParameter(f"expected a comma-separated list of positive integers such as 1,4,16, got {value!r}")
    return levels


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default=None, help="Base URL of a running server  [default: start one on a free port]")
@click.option("-m", "--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL,
              show_default="the shipped model's ggml-model-i2_s.gguf", help="Model for the server started here.")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU threads of the server started here.")
@click.option("-c", "--ctx-size", type=click.IntRange(min=0), default=512, show_default=True,
              help="Context per slot of the server started here, in tokens: room for the prompt and -n.")
@click.option("-s", "--streams", "levels", default="1,4,16", show_default=True, callback=_levels,
              help="Numbers of concurrent streams to measure, comma-separated.")
@click.option("-r", "--requests", type=click.IntRange(min=1), default=2, show_default=True,
              help="Requests each stream makes, one after another.")
@click.option("-n", "--max-tokens", type=click.IntRange(min=1), default=64, show_default=True,
              help="Tokens generated per request.")
@click.option("-p", "--prompt", default=DEFAULT_PROMPT, show_default=True, help="Prompt of every request.")
@click.option("--api-key", envvar="BITNET_API_KEY", default=None,
              help="API key to send (and to start the server here with)  [env: BITNET_API_KEY]")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
def main(url: str | None, model: Path, threads: int, ctx_size: int, levels: list[int], requests: int,
         max_tokens: int, prompt: str, api_key: str | None, as_json: bool) -> None:
    """Measure the server's aggregate tokens/s at several numbers of concurrent streams."""
    with contextlib.ExitStack() as stack:
        if url is None:
            if not model.is_file():
                raise BitnetError(f"model file {display_path(model)} not found: run python setup_env.py, or "
                                  "pass --url of a running server")
            args = ["--parallel", str(max(levels)), "-t", str(threads), "-c", str(ctx_size),
                    "--queue-size", "0"]
            click.echo(f"starting the server on {display_path(model)} ({max(levels)} slots, {threads} threads)",
                       err=True)
            if api_key:
                args += ["--api-key", api_key]
            url = stack.enter_context(local_server(model, args))
        url = url.rstrip("/")
        # A first request loads the model's pages from disk, so that the first level is not slower.
        stream_completion(url, prompt, 4, api_key)
        rows = []
        for n in levels:
            rows.append(run_level(url, n, requests, prompt, max_tokens, api_key))
            if not as_json:
                click.echo(f"{n} streams: {rows[-1].aggregate_tps:.1f} tokens/s", err=True)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        click.echo(format_table(rows))


if __name__ == "__main__":
    run_cli(main)
