"""Continuous batching: one thread owns the engine and advances every running request by one step
at a time; requests join and leave the running batch between steps.

A request (``Request``: prompt tokens, ``SamplingParams``, and a callback that receives its
``Event``s) is submitted to a bounded queue: at most ``n_slots + queue_size`` requests are running or
waiting at once, counted when they are submitted (a burst on an idle server cannot slip past the
bound before the scheduler's thread has handed out slots); ``submit`` raises ``QueueFull`` beyond
it. Between
steps the scheduler drops cancelled requests (a client that went away), gives free slots to the
oldest waiting requests, and builds the next step: for each generating request the token it
sampled last, and prompt chunks of newly admitted requests, at most ``batch_size`` prompt tokens
per step, so a long prompt is evaluated over several steps interleaved with the other requests'
generation instead of stalling them.

Prompt caching: a slot keeps its tokens when its request ends. A new request takes the free slot
whose tokens share the longest prefix with its prompt, and only the rest of the prompt is
evaluated (``Finished.cached_tokens`` counts the tokens it reused): a chat that comes back with one
more turn evaluates only that turn.

Per-request determinism: the engine gives a token the same logits whatever else is in its step
and however its prompt was cut into chunks (its attention is batch-invariant), and each request
samples with its own seeded sampler, so the same request gives the same tokens alone or among
others, and with or without a cached prefix.

Text comes out through an incremental UTF-8 decoder (a character split across tokens is sent once
complete) and a ``StopFilter``, which holds back any tail that could be the start of a stop string,
so a stop string never leaks partially into streamed text.

Failures: an exception in a step (the engine, sampling, decoding) fails the requests of that step
with ``Failed`` and the scheduler goes on; one it cannot recover from (freeing a slot fails, a
broken invariant) stops its thread: every request still running or waiting gets ``Failed``, later
submits raise ``Unavailable``, and ``failure`` says why (for /health). Either is logged with its
traceback.
"""

from __future__ import annotations

import codecs
import collections
import heapq
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bitnet.bindings import BitnetError, Model, Sampler
from bitnet.server.engine import BatchEngine, StepEntry

log = logging.getLogger("bitnet.server")


@dataclass(frozen=True)
class SamplingParams:
    """How one request generates. max_tokens None: until end of text or a full context;
    temperature 0: greedy; top_k 0, top_p 1, min_p 0, repeat_penalty 1: off (OpenAI's sampling is
    temperature then nucleus, the server's default); seed None: a random one; stop: strings that
    end the text (not included in it); ignore_eos: keep going past end-of-generation tokens."""

    max_tokens: int | None = None
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class Delta:
    """New text of a request (never empty)."""
    text: str


@dataclass(frozen=True)
class Finished:
    """The request is done: reason "stop" (end of text or a stop string) or "length" (max_tokens or
    a full context). cached_tokens: the prompt's first tokens found in the slot's cache, not
    evaluated again."""
    reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True)
class Failed:
    """The request could not complete (engine failure, shutdown)."""
    message: str


Event = Delta | Finished | Failed


class QueueFull(Exception):
    """All slots are busy and the waiting queue is full."""


class Unavailable(Exception):
    """The scheduler takes no requests: it is shutting down, or its thread stopped on a failure."""


class Request:
    """One generation. on_event is called from the scheduler thread with each Event, in order,
    ending with exactly one Finished or Failed (none after cancel()); it must not block."""

    def __init__(self, prompt: Sequence[int], params: SamplingParams, on_event: Callable[[Event], None]):
        if not prompt:
            raise ValueError("empty prompt")
        self.prompt = list(prompt)
        self.params = params
        self.on_event = on_event
        self.cancelled = False  # set under the scheduler's lock, read by its thread between steps


class StopFilter:
    """Passes text through, holding back the longest tail that could begin one of ``stops``."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Adds text; returns (text that is safe to emit, whether a stop string was reached). After
        a stop, the text from the stop string on is dropped."""
        buf = self.held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.held = ""
            return buf[:min(hits)], True
        keep = 0
        for k in range(min(len(buf), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
            if any(s.startswith(buf[-k:]) for s in self.stops):
                keep = k
                break
        self.held = buf[len(buf) - keep:]
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        """The held-back text (the request ended without reaching a stop string)."""
        text, self.held = self.held, ""
        return text


class _Running:
    """A request holding a slot."""

    def __init__(self, req: Request, slot: int, n_cached: int, speculator=None):
        p = req.params
        self.req = req
        self.slot = slot
        self.n_cached = n_cached      # prompt tokens the slot already held
        self.n_fed = n_cached         # prompt tokens already in the slot
        self.n_gen = 0                # tokens generated so far (a stopping end-of-text not counted)
        self.generated: list[int] = []
        self.next_token: int | None = None  # sampled, not yet fed to the engine
        seed = p.seed if p.seed is not None else secrets.randbits(64)
        self.sampler = Sampler(temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p,
                               repeat_penalty=p.repeat_penalty, seed=seed % 2**64)
        for t in req.prompt:  # the repetition penalty looks at the prompt too, as bitnet-cli's does
            self.sampler.accept(t)
        # Speculative decoding (None: off): makes this request's Speculator over its sampler.
        self.spec = speculator(self.sampler) if speculator else None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopFilter(p.stop)


@dataclass(frozen=True)
class SchedulerStats:
    """A snapshot for /health and /metrics."""
    n_slots: int
    slots_in_use: int
    queue_depth: int
    queue_size: int
    steps_total: int
    prompt_tokens_total: int
    generated_tokens_total: int
    requests_cancelled_total: int
    prompt_tokens_per_second: float      # over the last `window` seconds
    generation_tokens_per_second: float
    spec_drafted_total: int = 0          # speculative decoding: guesses verified
    spec_accepted_total: int = 0         # ... and kept


class Scheduler:
    """Owns ``engine`` (from start() to close()) and runs submitted requests on it."""

    def __init__(self, engine: BatchEngine, model: Model, batch_size: int = 128, queue_size: int = 64,
                 window: float = 10.0, speculation: dict | None = None):
        """speculation: bindings.Speculator's options (e.g. {"mode": "ngram"}) for every request,
        whose generating steps then verify a draft per slot, all slots in one forward pass (the
        engine must be a SlotEngine); None: off."""
        if batch_size < 1 or queue_size < 0:
            raise ValueError(f"batch_size must be >= 1 and queue_size >= 0 (got {batch_size}, {queue_size})")
        self.engine = engine
        self.model = model
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.window = window
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: collections.deque[Request] = collections.deque()
        self._running: list[_Running] = []  # in admission order; changed under the lock
        self._free = list(range(engine.n_slots))  # heap: the lowest free slot goes first
        self._cached: list[list[int]] = [[] for _ in range(engine.n_slots)]  # each slot's tokens
        self._closing = False
        self._failure: str | None = None  # why the thread stopped, when it failed
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._recent: collections.deque[tuple[float, int, int]] = collections.deque()  # (t, prompt, gen)
        self._steps = self._prompt_total = self._gen_total = self._cancelled_total = 0
        self.speculation = speculation
        self._drafted_total = self._accepted_total = 0

    @property
    def n_ctx(self) -> int:
        """Tokens one request can hold, prompt included."""
        return self.engine.n_ctx

    @property
    def failure(self) -> str | None:
        """None while the scheduler can run requests; else why its thread stopped."""
        return self._failure

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bitnet-scheduler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops after the current step; requests still running or waiting get Failed."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            left = [r.req for r in self._running] + list(self._pending)
            self._running, self._pending = [], collections.deque()
        for req in left:
            _emit(req, Failed("the server is shutting down"))

    def submit(self, req: Request) -> None:
        """Queues req. Raises QueueFull when n_slots + queue_size requests are already running or
        waiting, Unavailable when the scheduler is closing or has failed, and ValueError when its
        prompt does not fit in a slot's context."""
        if len(req.prompt) >= self.n_ctx:
            raise ValueError(f"prompt of {len(req.prompt)} tokens does not fit in a context of {self.n_ctx}")
        with self._lock:
            if self._failure is not None:
                raise Unavailable(f"the scheduler stopped: {self._failure}")
            if self._closing:
                raise Unavailable("the server is shutting down")
            # Pending requests take the free slots first (at the next admission): what is left of
            # the pending queue beyond them is what waits.
            if len(self._running) + len(self._pending) >= self.engine.n_slots + self.queue_size:
                raise QueueFull(f"all {self.engine.n_slots} slots are busy and the queue of {self.queue_size} "
                                "waiting requests is full")
            self._pending.append(req)
            self._wake.notify()

    def cancel(self, req: Request) -> None:
        """Drops req: at once when still waiting, else its slot is freed before the next step. No
        events follow. A no-op once it has finished."""
        with self._lock:
            if req.cancelled:
                return
            req.cancelled = True
            try:
                self._pending.remove(req)
                self._cancelled_total += 1
            except ValueError:
                self._wake.notify()

    def stats(self) -> SchedulerStats:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            span = max(min(self.window, now - self._started), 1e-3)
            return SchedulerStats(
                n_slots=self.engine.n_slots, slots_in_use=len(self._running),
                queue_depth=len(self._pending), queue_size=self.queue_size, steps_total=self._steps,
                prompt_tokens_total=self._prompt_total, generated_tokens_total=self._gen_total,
                requests_cancelled_total=self._cancelled_total,
                prompt_tokens_per_second=sum(p for _, p, _ in self._recent) / span,
                generation_tokens_per_second=sum(g for _, _, g in self._recent) / span,
                spec_drafted_total=self._drafted_total, spec_accepted_total=self._accepted_total)

    # ---- the scheduler thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - whatever it is, the requests must not hang
            log.exception("the scheduler stopped")
            with self._lock:
                self._failure = f"{type(e).__name__}: {e}"
                left = [r.req for r in self._running] + list(self._pending)
                self._running, self._pending = [], collections.deque()
            for req in left:
                if not req.cancelled:
                    _emit(req, Failed(f"the server failed ({self._failure}); see its log"))

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._closing or self._pending or self._running):
                    self._wake.wait()
                if self._closing:
                    return
                self._drop_cancelled()
                self._admit()
                batch = self._plan()
            if not batch:
                continue
            try:
                logits = self.engine.step([e for _, e in batch])
                n_prompt, n_gen = self._advance(batch, logits)
            except Exception as e:  # noqa: BLE001 - fail this step's requests, serve the others
                if isinstance(e, BitnetError):
                    log.error("an engine step failed: %s", e)
                    message = f"the engine failed: {e}"
                else:
                    log.exception("a scheduler step failed")
                    message = f"the server failed ({type(e).__name__}: {e}); see its log"
                for r, _ in batch:
                    if r in self._running:  # not finished by the part of the step that ran
                        self._finish(r, Failed(message))
                continue
            with self._lock:
                self._steps += 1
                self._prompt_total += n_prompt
                self._gen_total += n_gen
                now = time.monotonic()
                self._recent.append((now, n_prompt, n_gen))
                self._trim(now)

    def _drop_cancelled(self) -> None:
        for r in [r for r in self._running if r.req.cancelled]:
            self._running.remove(r)
            self._release(r.slot, self._fed(r))
            self._cancelled_total += 1

    def _admit(self) -> None:
        while self._free and self._pending:
            req = self._pending.popleft()
            # The free slot holding the longest prefix of the prompt (the lowest of equals); at
            # least the prompt's last token is evaluated, for the logits that follow it.
            slot, n_keep = max(((s, min(_common_prefix(self._cached[s], req.prompt), len(req.prompt) - 1))
                                for s in self._free), key=lambda c: (c[1], -c[0]))
            spec = None
            if self.speculation is not None:
                def spec(sampler, options=self.speculation):
                    return self.engine.speculator(self.model, sampler, **options)
            try:
                running = _Running(req, slot, n_keep, spec)
            except Exception as e:  # noqa: BLE001 - sampler parameters the engine refuses, or worse
                if not isinstance(e, BitnetError):
                    log.exception("starting a request failed")
                req.cancelled = True
                _emit(req, Failed(str(e)))
                continue
            if self.engine.n_past(slot) != n_keep:
                self.engine.truncate(slot, n_keep)
            self._cached[slot] = []  # unknown until the request ends
            self._free.remove(slot)
            heapq.heapify(self._free)
            self._running.append(running)

    def _plan(self) -> list[tuple[_Running, StepEntry]]:
        """The next step: every generating request's last token, then prompt chunks of
        `batch_size` tokens (the last one shorter) while the step has room for them."""
        batch, n_prompt = [], 0
        for r in self._running:
            if r.next_token is not None and r.spec is not None:
                # Room for the guesses: max_tokens, and the context, where one position stays free
                # so that the length check after each token falls where plain decoding's does.
                p = r.req.params
                room = self.engine.n_ctx - self.engine.n_past(r.slot) - 2
                if p.max_tokens is not None:
                    room = min(room, p.max_tokens - r.n_gen - 1)
                draft = r.spec.draft(r.req.prompt + r.generated, max(room, 0))
                batch.append((r, StepEntry(r.slot, [r.next_token, *draft], True, verify=True)))
                continue
            if r.next_token is not None:
                batch.append((r, StepEntry(r.slot, [r.next_token], True)))
                continue
            n = min(self.batch_size, len(r.req.prompt) - r.n_fed)
            if n_prompt and n_prompt + n > self.batch_size:
                continue
            n_prompt += n
            chunk = r.req.prompt[r.n_fed:r.n_fed + n]
            batch.append((r, StepEntry(r.slot, chunk, r.n_fed + n == len(r.req.prompt))))
        return batch

    def _advance(self, batch: list[tuple[_Running, StepEntry]], logits: dict) -> tuple[int, int]:
        """Books the step's tokens and samples where logits came back; returns the (prompt,
        generated) token counts of the step."""
        n_prompt = n_gen = 0
        for r, e in batch:
            if r.next_token is None:
                r.n_fed += len(e.tokens)
                n_prompt += len(e.tokens)
            if not e.want_logits:
                continue
            if e.verify:
                tokens = self.engine.verify(e.slot, r.spec, r.sampler)  # recorded in the sampler
                with self._lock:
                    self._drafted_total += len(e.tokens) - 1
                    self._accepted_total += len(tokens) - 1
                for token in tokens:
                    r.generated.append(token)
                    r.n_gen += 1
                    n_gen += 1
                    self._on_token(r, token)
                    if r not in self._running:  # finished: the rest of the draft is dropped
                        break
                continue
            token = r.sampler.sample(logits[e.slot])
            r.sampler.accept(token)
            r.generated.append(token)
            r.n_gen += 1
            n_gen += 1
            self._on_token(r, token)
        return n_prompt, n_gen

    def _on_token(self, r: _Running, token: int) -> None:
        p = r.req.params
        if not p.ignore_eos and self.model.is_eog(token):
            r.n_gen -= 1  # the end-of-text that stops it is not a completion token (bitnet-cli counts alike)
            self._complete(r, "stop")
            return
        # Control tokens (with ignore_eos, <|end_of_text|>...) are markup, not text: left out, as
        # llama-server and bitnet-cli without --special do.
        piece = b"" if self.model.is_control(token) else self.model.token_to_piece(token)
        text, stopped = r.stops.push(r.decoder.decode(piece))
        if text:
            _emit(r.req, Delta(text))
        if stopped:
            self._finish(r, Finished("stop", len(r.req.prompt), r.n_gen, r.n_cached))
        elif (p.max_tokens is not None and r.n_gen >= p.max_tokens) or \
                self.engine.n_past(r.slot) >= self.engine.n_ctx:
            self._complete(r, "length")
        else:
            r.next_token = token

    def _complete(self, r: _Running, reason: str) -> None:
        """Ends r without a stop string in its text so far: sends what the decoder and the stop
        filter still hold (unless that completes a stop string) and Finished."""
        text, stopped = r.stops.push(r.decoder.decode(b"", final=True))
        text += "" if stopped else r.stops.flush()
        if text:
            _emit(r.req, Delta(text))
        self._finish(r, Finished("stop" if stopped else reason, len(r.req.prompt), r.n_gen, r.n_cached))

    def _finish(self, r: _Running, event: Finished | Failed) -> None:
        with self._lock:
            cancelled = r.req.cancelled
            r.req.cancelled = True  # later cancel() calls are no-ops
            self._running.remove(r)
        if not cancelled:  # before freeing the slot, which may fail and stop the loop
            _emit(r.req, event)
        with self._lock:
            # A finished request's tokens stay for the next prompt that starts with them; after a
            # failure the slot's state is unknown.
            self._release(r.slot, self._fed(r) if isinstance(event, Finished) else None)

    def _fed(self, r: _Running) -> list[int]:
        """The tokens r put in its slot: what was fed is a prefix of its prompt and samples."""
        return (r.req.prompt + r.generated)[:self.engine.n_past(r.slot)]

    def _release(self, slot: int, kept: list[int] | None) -> None:
        """Returns slot to the free ones, keeping its cached tokens `kept` (None: clears it)."""
        if kept is None:
            self.engine.free(slot)
            kept = []
        self._cached[slot] = kept
        heapq.heappush(self._free, slot)

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _emit(req: Request, event: Event) -> None:
    """Hands an event to the request's owner; one that cannot take it any more (its event loop is
    gone) is treated as a disconnected client."""
    try:
        req.on_event(event)
    except RuntimeError:
        req.cancelled = True
