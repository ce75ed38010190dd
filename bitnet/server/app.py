"""The OpenAI-compatible HTTP API (FastAPI) in front of the scheduler.

Endpoints: ``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/completions``, ``POST
/v1/chat/completions`` (both as one JSON answer or as server-sent events in OpenAI's chunk format,
ending with ``data: [DONE]``), ``GET /health`` and ``GET /metrics`` (Prometheus text format).

Every error, whatever raised it (a malformed body, a bad parameter, an unknown model or route, a
prompt longer than the context, a full queue, a missing API key, a failure inside the server), is
answered with OpenAI's error body ``{"error": {"message", "type", "param", "code"}}`` and a 4xx/5xx
status; the server goes on serving. Request parameters are validated strictly (a string where a
number belongs is an error, not a conversion); parameters of OpenAI's API that this server does not
implement are ignored.

Bodies are read as they stream in, counted and timed: more than ``max_body_size`` bytes is a 413 (at
once when Content-Length says so, else as soon as the count passes it, whatever Content-Length
claimed), a body not complete within ``body_timeout`` seconds a 408; both close the connection, so
the rest of the body is never read. The limits on connections and request heads are uvicorn's side
(bitnet/server/http.py). A client that leaves early is logged at info level, without a traceback.

The request handlers run on the event loop; generation runs on the scheduler's thread, which hands
each request's events back through ``loop.call_soon_threadsafe``. A streaming client that goes away
is noticed by Starlette (it cancels the response), a waiting non-streaming one by polling; either
way the request is cancelled and its slot is free before the next engine step.

Streaming uses Starlette's StreamingResponse rather than sse-starlette: OpenAI's stream is plain
``data: <json>`` lines with no event names, ids or retry fields, and StreamingResponse already
watches for the client's disconnect, so a further dependency would add nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from bitnet.bindings import BitnetError, Model
from bitnet.server.embeddings import EmbeddingBody, EmbeddingInputError, Embedder
from bitnet.server import shapes
from bitnet.server.shapes import model_id
from bitnet.server.prompt import ChatRenderError, chat_render, chat_tokens, surely_too_long, vocab_scan
from bitnet.server.scheduler import (Delta, Failed, Finished, QueueFull, Request, SamplingParams, Scheduler,
                                    Unavailable)
from bitnet.server.watch import ModelFileWatch

log = logging.getLogger("bitnet.server")


@dataclass
class ServerConfig:
    """What the HTTP layer needs. default_max_tokens None: until end of text or a full context;
    system_prompt: a system message put first in chats that have none; api_key None: no auth;
    max_body_size: most bytes of a request body; body_timeout: seconds a body may take to arrive;
    watch: checked at each request, to warn when the model file changes on disk (None: no check)."""

    model: Model
    model_path: Path
    scheduler: Scheduler
    default_max_tokens: int | None = None
    default_temperature: float = 0.8
    system_prompt: str | None = None
    api_key: str | None = None
    max_body_size: int = 4 << 20
    body_timeout: float = 30.0
    watch: ModelFileWatch | None = None

    @property
    def model_id(self) -> str:
        return model_id(self.model_path)


# ---- errors ---------------------------------------------------------------------------------

class APIError(Exception):
    """An error answered with OpenAI's error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _param_of(loc: tuple) -> str | None:
    """OpenAI-style parameter path ("messages[0].role") of a pydantic error location, leaving out
    the union members pydantic names in it ("str", "list[constrained-str]")."""
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif str(p).isidentifier() and p not in ("str", "int", "float", "bool"):
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or None


def _validation_error(exc: ValidationError) -> APIError:
    """The most specific of pydantic's errors (of a union's alternatives, the one that got
    furthest) as one 400."""
    err = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
    if err["type"] == "json_invalid":
        return APIError(400, f"the request body is not valid JSON ({err['msg']}); send a JSON object",
                        code="invalid_json")
    param = _param_of(tuple(err.get("loc", ())))
    if param is None:
        return APIError(400, f"the request body must be a JSON object ({err['msg']})", code="invalid_json")
    got = f" (got {json.dumps(err['input'])[:80]})" if err["type"] != "missing" else ""
    return APIError(400, f"{param}: {err['msg']}{got}", param=param,
                    code="missing_parameter" if err["type"] == "missing" else "invalid_value")


_CLOSE = {"Connection": "close"}  # the rest of the body is left unread: the connection cannot go on


async def _read_body(http: HttpRequest, limit: int, timeout: float) -> bytes:
    """The request's body, read chunk by chunk as it arrives: APIError 413 as soon as it is known
    to exceed `limit` bytes (from Content-Length, or counting, whatever Content-Length said), 408
    when it is not complete within `timeout` seconds. Raises ClientDisconnect when the client
    leaves."""
    too_large = APIError(413, f"the request body is larger than {limit} bytes, the most this server takes "
                         "(--max-body-size)", code="request_too_large", headers=_CLOSE)
    declared = http.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in http.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                parts.append(chunk)
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout:g} s ({size} bytes came); "
                       "send the whole body at once (--body-timeout)", code="request_timeout",
                       headers=_CLOSE) from None
    return b"".join(parts)


async def _parse(http: HttpRequest, config: ServerConfig, cls: type[BaseModel]):
    """The request's body as a cls, whatever its Content-Type (curl -d sends a form's)."""
    body = await _read_body(http, config.max_body_size, config.body_timeout)
    try:
        return cls.model_validate_json(body)
    except ValidationError as e:
        raise _validation_error(e) from None


# ---- request bodies -----------------------------------------------------------------------------

class _Body(BaseModel):
    # strict: "1" is not a number and 1 is not a boolean; unknown OpenAI parameters are ignored.
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


Stop = Annotated[str, Field(min_length=1)]


class _Generation(_Body):
    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    seed: int | None = None
    stop: Stop | list[Stop] | None = None  # at most MAX_STOP, checked in sampling() for OpenAI's message
    n: Annotated[int, Field(ge=1, le=1)] = 1  # one choice per request
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # llama.cpp's extension: generate past end-of-text (benchmarks)


TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
MAX_STOP = 4  # OpenAI's limit on stop sequences


class CompletionBody(_Generation):
    # OpenAI's forms: a text, token ids, or a list of either (a choice per prompt, by index)
    prompt: str | TokenIds | Annotated[list[str], Field(min_length=1)] | Annotated[list[TokenIds], Field(min_length=1)]


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None  # None only where OpenAI allows it (see _check_content)
    tool_calls: list[dict] | None = None


def _check_content(messages: list[Message]) -> None:
    """OpenAI's rule: every message has its content, except an assistant message that makes tool
    calls, whose content may be null or absent (and reads as empty here)."""
    for i, m in enumerate(messages):
        if m.content is None and not (m.role == "assistant" and m.tool_calls):
            raise APIError(400, f"messages[{i}].content: a {m.role} message needs its content (a string or a "
                           "list of text parts); null is only allowed in an assistant message with tool_calls",
                           param=f"messages[{i}].content", code="invalid_value")


class ChatBody(_Generation):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None


# ---- metrics --------------------------------------------------------------------------------

class HttpMetrics:
    """Counts answered requests by endpoint and status (pure ASGI middleware: it sees a streamed
    response's status without buffering it, and leaves disconnect detection alone)."""

    def __init__(self, app, endpoints: set[str], counts: dict[tuple[str, int], int]):
        self.app = app
        self.endpoints = endpoints
        self.counts = counts  # (endpoint, status) -> requests; "other" for unknown paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            key = (endpoint, status[0])
            self.counts[key] = self.counts.get(key, 0) + 1


def _prometheus(config: ServerConfig, http_counts: dict[tuple[str, int], int]) -> str:
    s = config.scheduler.stats()
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP bitnet_{name} {help_}", f"# TYPE bitnet_{name} {kind}"])
        lines.extend(f"bitnet_{name}{labels} {value:g}" for labels, value in samples)

    metric("requests_total", "counter", "HTTP requests answered, by endpoint and status code.",
           [(f'{{endpoint="{e}",status="{c}"}}', n) for (e, c), n in sorted(http_counts.items())])
    metric("prompt_tokens_total", "counter", "Prompt tokens evaluated.", [("", s.prompt_tokens_total)])
    metric("generated_tokens_total", "counter", "Tokens generated.", [("", s.generated_tokens_total)])
    metric("prompt_tokens_per_second", "gauge", f"Prompt tokens evaluated per second over the last "
           f"{config.scheduler.window:g} s.", [("", s.prompt_tokens_per_second)])
    metric("generation_tokens_per_second", "gauge", f"Tokens generated per second over the last "
           f"{config.scheduler.window:g} s, all requests together.", [("", s.generation_tokens_per_second)])
    metric("requests_cancelled_total", "counter", "Requests dropped because their client went away.",
           [("", s.requests_cancelled_total)])
    metric("engine_steps_total", "counter", "Forward steps of the engine.", [("", s.steps_total)])
    metric("spec_drafted_tokens_total", "counter", "Speculative decoding: drafted tokens verified.",
           [("", s.spec_drafted_total)])
    metric("spec_accepted_tokens_total", "counter", "Speculative decoding: drafted tokens kept.",
           [("", s.spec_accepted_total)])
    metric("queue_depth", "gauge", "Requests waiting for a slot.", [("", s.queue_depth)])
    metric("queue_size", "gauge", "Most requests that may wait for a slot.", [("", s.queue_size)])
    metric("slots_in_use", "gauge", "Slots running a request.", [("", s.slots_in_use)])
    metric("slots_total", "gauge", "Slots (requests run at the same time).", [("", s.n_slots)])
    return "\n".join(lines) + "\n"


# ---- generation plumbing ------------------------------------------------------------------------

def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


class _Job:
    """A submitted request and the queue its events arrive in, on the event loop."""

    def __init__(self, scheduler: Scheduler, prompt: list[int], params: SamplingParams):
        loop = asyncio.get_running_loop()
        self.scheduler = scheduler
        self.events: asyncio.Queue = asyncio.Queue()
        self.req = Request(prompt, params, lambda ev: loop.call_soon_threadsafe(self.events.put_nowait, ev))
        try:
            scheduler.submit(self.req)
        except QueueFull as e:
            raise APIError(503, f"the server is busy ({e}); retry later", "server_error",
                           code="queue_full", headers={"Retry-After": "1"}) from None
        except Unavailable as e:
            raise APIError(503, f"the server cannot take requests: {e}", "server_error",
                           code="unavailable") from None

    def cancel(self) -> None:
        self.scheduler.cancel(self.req)

    async def collect(self, http: HttpRequest) -> tuple[str, Finished] | None:
        """All the text and the Finished event; None when the client went away first (checked
        every half second: text arriving meanwhile does not postpone the check)."""
        loop = asyncio.get_running_loop()
        parts: list[str] = []
        next_check = loop.time() + 0.5
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(self.events.get(), timeout=0.5)
                except TimeoutError:
                    ev = None
                if loop.time() >= next_check:
                    next_check = loop.time() + 0.5
                    if await http.is_disconnected():
                        return None
                if isinstance(ev, Delta):
                    parts.append(ev.text)
                elif isinstance(ev, Finished):
                    return "".join(parts), ev
                elif isinstance(ev, Failed):
                    raise APIError(500, ev.message, "server_error")
        finally:
            self.cancel()  # a no-op once finished



async def _stream(jobs: list[_Job], chunks: list[Callable[..., dict]], first: dict | None,
                  include_usage: bool) -> AsyncIterator[str]:
    """SSE lines: `first` (if any), then for each job (the prompts of a list, which run together)
    a chunk per piece of text and its finishing chunk, one job after the other, the usage chunk of
    them all when asked for, [DONE]. chunks[i](text=..., finish=...) builds a chunk of job i."""
    usage = {"usage": None} if include_usage else {}
    done: list[Finished] = []
    try:
        if first is not None:
            yield _sse(first | usage)
        for job, chunk in zip(jobs, chunks):
            while True:
                ev = await job.events.get()
                if isinstance(ev, Delta):
                    yield _sse(chunk(text=ev.text, finish=None) | usage)
                elif isinstance(ev, Finished):
                    yield _sse(chunk(text=None, finish=ev.reason) | usage)
                    done.append(ev)
                    break
                else:
                    yield _sse({"error": {"message": ev.message, "type": "server_error", "param": None,
                                          "code": None}})
                    return
        if include_usage:
            yield _sse(shapes.usage_chunk(chunks[0](text=None, finish=None), *done))
        yield "data: [DONE]\n\n"
    finally:
        for job in jobs:
            job.cancel()


# ---- the application ------------------------------------------------------------------------

def create_app(config: ServerConfig) -> FastAPI:
    """The ASGI application. The scheduler must be running while it serves (the caller starts it
    and closes it after the server stops)."""
    app = FastAPI(title="bitnet OpenAI-compatible server", docs_url=None, redoc_url=None, openapi_url=None)
    model, sched = config.model, config.scheduler
    vocab = vocab_scan(model)
    created = int(config.model_path.stat().st_mtime)
    http_counts: dict[tuple[str, int], int] = {}

    def check_file() -> None:
        if config.watch is not None:
            config.watch.check()

    @app.exception_handler(APIError)
    async def _api_error(_, exc: APIError):
        return exc.response()

    @app.exception_handler(ClientDisconnect)
    async def _gone(http: HttpRequest, _):
        log.info("%s %s: the client went away before its request was complete", http.method, http.url.path)
        return Response(status_code=499)  # nginx's "client closed request": for the metrics

    @app.exception_handler(Exception)
    async def _internal_error(http: HttpRequest, exc: Exception):
        # Starlette logs the traceback (it raises exc again once this answer is sent).
        return APIError(500, f"{http.method} {http.url.path}: the server failed ({type(exc).__name__}: {exc}); "
                        "see its log", "server_error").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(http: HttpRequest, exc: StarletteHTTPException):
        if exc.status_code == 404:
            msg = f"no endpoint {http.method} {http.url.path}; see GET /v1/models, POST /v1/completions, " \
                  "POST /v1/chat/completions, POST /v1/embeddings, GET /health, GET /metrics"
        else:
            msg = f"{http.method} {http.url.path}: {exc.detail}"
        return APIError(exc.status_code, msg, code=None).response()

    def authorize(http: HttpRequest) -> None:
        if config.api_key is None:
            return
        scheme, _, key = http.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), config.api_key.encode()):
            raise APIError(401, "missing or incorrect API key: send the header 'Authorization: Bearer <key>' "
                           "with the key the server was started with (--api-key)", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorize)]

    def model_card() -> dict:
        return {"id": config.model_id, "object": "model", "created": created, "owned_by": "bitnet"}

    def check_model(name: str | None) -> None:
        if name is not None and name not in (config.model_id, config.model_path.name):
            raise APIError(404, f"the model '{name}' does not exist: this server serves '{config.model_id}' "
                           "(GET /v1/models)", param="model", code="model_not_found")

    def sampling(body: _Generation, max_tokens: int | None) -> SamplingParams:
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        if len(stop) > MAX_STOP:
            raise APIError(400, f"stop: at most {MAX_STOP} stop sequences are allowed, got {len(stop)}",
                           param="stop", code="invalid_value")
        return SamplingParams(
            max_tokens=max_tokens if max_tokens is not None else config.default_max_tokens,
            temperature=body.temperature if body.temperature is not None else config.default_temperature,
            top_p=body.top_p, seed=body.seed, stop=stop, ignore_eos=body.ignore_eos)

    def context_exceeded(param: str, what: str) -> APIError:
        return APIError(400, f"the {param} is {what}; a request's context holds {sched.n_ctx} tokens, prompt and "
                        "answer together: shorten the prompt (or restart the server with a larger -c)",
                        param=param, code="context_length_exceeded")

    async def tokenize(text: bytes, param: str, tokenizer: Callable[[], list[int]]) -> list[int]:
        """tokenizer()'s tokens of text, refused by its byte count alone when it cannot fit."""
        at_least = surely_too_long(len(text), sched.n_ctx, vocab)
        if at_least is not None:
            raise context_exceeded(param, f"{len(text)} bytes, at least {at_least} tokens")
        tokens = await asyncio.to_thread(tokenizer)
        if len(tokens) >= sched.n_ctx:
            raise context_exceeded(param, f"{len(tokens)} tokens")
        if not tokens:
            raise APIError(400, f"the {param} is empty", param=param, code="invalid_value")
        return tokens

    def submit(prompts: list[list[int]], params: SamplingParams) -> list[_Job]:
        """A job per prompt; none is left running when one cannot be taken."""
        jobs: list[_Job] = []
        try:
            for tokens in prompts:
                jobs.append(_Job(sched, tokens, params))
        except APIError:
            for job in jobs:
                job.cancel()
            raise
        return jobs

    async def respond(http: HttpRequest, jobs: list[_Job], stream: bool, include_usage: bool,
                      chunks: list[Callable[..., dict]], first: dict | None,
                      whole: Callable[[list[tuple[str, Finished]]], dict]):
        if stream:
            # The background task cancels the jobs even when the client leaves before the stream's
            # generator first runs (its own `finally` covers the rest).
            return StreamingResponse(_stream(jobs, chunks, first, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"},
                                     background=BackgroundTask(lambda: [job.cancel() for job in jobs]))
        results = []
        try:
            for job in jobs:  # they run together; their answers are taken in order
                result = await job.collect(http)
                if result is None:
                    log.info("%s %s: the client went away before its answer was ready", http.method, http.url.path)
                    return Response(status_code=499)  # nginx's "client closed request": for the metrics
                results.append(result)
        finally:
            for job in jobs:
                job.cancel()
        return whole(results)

    @app.get("/health")
    async def health():
        check_file()
        if sched.failure is not None:
            raise APIError(503, f"the scheduler stopped ({sched.failure}); restart the server", "server_error",
                           code="unavailable")
        s = sched.stats()
        return {"status": "ok", "slots_idle": s.n_slots - s.slots_in_use, "slots_processing": s.slots_in_use,
                "queue_depth": s.queue_depth}

    @app.get("/metrics", dependencies=auth)
    async def metrics():
        return PlainTextResponse(_prometheus(config, http_counts),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=auth)
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}", dependencies=auth)
    async def get_model(name: str):
        check_model(name)
        return model_card()

    @app.post("/v1/completions", dependencies=auth)
    async def completions(http: HttpRequest):
        check_file()
        body = await _parse(http, config, CompletionBody)
        check_model(body.model)
        # OpenAI's four forms: a text, a list of texts, a list of token ids, a list of such lists.
        one = isinstance(body.prompt, str) or isinstance(body.prompt[0], int)
        prompts = [body.prompt] if one else body.prompt
        tokens = []
        for i, prompt in enumerate(prompts):
            param = "prompt" if one else f"prompt[{i}]"
            if isinstance(prompt, str):
                text = prompt.encode()
                tokens.append(await tokenize(text, param, lambda text=text: model.tokenize(text, True, True)))
                continue
            bad = [t for t in prompt if t >= model.n_vocab]
            if bad:
                raise APIError(400, f"{param}: token id {bad[0]} is out of the vocabulary (0..{model.n_vocab - 1})",
                               param=param, code="invalid_value")
            if len(prompt) >= sched.n_ctx:
                raise context_exceeded(param, f"{len(prompt)} tokens")
            tokens.append(list(prompt))
        jobs = submit(tokens, sampling(body, body.max_tokens))
        head = shapes.completion_head(config.model_id)
        chunks = [partial(shapes.completion_chunk, head, index=i) for i in range(len(jobs))]
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await respond(http, jobs, body.stream, include_usage, chunks, None,
                             partial(shapes.completions, head))

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(http: HttpRequest):
        check_file()
        body = await _parse(http, config, ChatBody)
        check_model(body.model)
        _check_content(body.messages)
        messages = [{"role": "system" if m.role == "developer" else m.role,
                     "content": m.content if isinstance(m.content, str)
                     else "".join(p.text for p in m.content or [])} for m in body.messages]
        if config.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": config.system_prompt})
        try:
            chat = chat_render(model, messages)
        except BitnetError as e:
            raise APIError(400, f"messages: {e}", param="messages", code="invalid_value") from None
        except ChatRenderError as e:
            raise APIError(500, f"messages: {e}; the server cannot render this model's chats safely",
                           "server_error") from None
        tokens = await tokenize(chat.text, "messages", lambda: chat_tokens(model, vocab, chat))
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        jobs = submit([tokens], sampling(body, max_tokens))
        head = shapes.chat_head(config.model_id)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        first = shapes.chat_first_chunk(head)
        return await respond(http, jobs, body.stream, include_usage, [partial(shapes.chat_chunk, head)], first,
                             lambda results: shapes.chat_completion(head, *results[0]))

    embedder = Embedder(model, n_ctx_max=sched.n_ctx)

    @app.post("/v1/embeddings", dependencies=auth)
    async def embeddings(http: HttpRequest):
        check_file()
        body = await _parse(http, config, EmbeddingBody)
        check_model(body.model)
        try:
            return await embedder.respond(body, config.model_id)
        except EmbeddingInputError as e:
            raise APIError(400, str(e), param=e.param, code="invalid_value") from None

    endpoints = {r.path for r in app.routes if "{" not in getattr(r, "path", "{")}
    app.add_middleware(HttpMetrics, endpoints=endpoints, counts=http_counts)
    return app
