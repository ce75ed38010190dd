"""BitNetModel: a ternary model loaded for generation from Python.

One model file, one engine context of ``n_parallel`` sequence slots (KV caches), and the server's
continuous-batching scheduler (bitnet/server/scheduler.py) on a thread that owns that context.
``generate``, ``chat`` and ``create_*completion`` are requests to that scheduler, so they share
its code with the HTTP server: the same sampler per request (seeded from ``seed``), stop strings
that never leak into a stream, and the prompt cache (a slot keeps its tokens after a request, and
a request whose prompt starts with them evaluates only the rest: that is how ``chat`` evaluates
only the new part of a conversation). ``batch_generate`` runs its prompts on a scheduler of its
own with ``batch_size`` slots: one forward pass per step for all of them, each weight matrix read
once per step, prompts joining as others finish.

Every result equals what the prompt gives alone: the engine computes a token's logits bit for bit
the same whatever else is in its batch and however its prompt was cut (tests/test_attention.py),
and each request samples with its own sampler.

Thread safety: ``generate``, ``chat``, ``create_completion``, ``create_chat_completion`` and
``batch_generate`` may be called from several threads at once (the requests queue for the
slots; ``batch_generate`` runs beside them on its own slots); ``tokenize`` and ``detokenize``
too. ``last_eval_tokens``, ``last_cached_tokens`` and ``last_generated_tokens`` describe the latest request that finished,
whichever thread made it. A ``history`` list given to ``chat`` belongs to one thread. ``close``
must not race with calls in flight.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from bitnet import bindings
from bitnet.errors import BitnetError, ContextLengthError, InvalidArgumentError, ModelLoadError
from bitnet.server import shapes
from bitnet.server.engine import SlotEngine
from bitnet.server.prompt import ChatRenderError, Vocab, chat_render, chat_tokens, vocab_scan
from bitnet.server.scheduler import Delta, Finished, Request, SamplingParams, Scheduler

# More requests than any caller queues: the library does not refuse work, it makes it wait.
_QUEUE_SIZE = 1 << 20


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate, with Hugging Face's names and defaults.

    max_new_tokens: tokens to generate at most (None: until end of text or a full context);
    do_sample False: greedy (the other sampling fields are then unused); temperature, top_k (0:
    off), top_p (1: off), min_p (0: off), repetition_penalty (1: off, over the last 64 tokens);
    seed: of the request's own sampler (None: a random one); stop: strings that end the text
    (not included in it)."""

    max_new_tokens: int | None = 128
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    do_sample: bool = False
    seed: int | None = None
    stop: str | Sequence[str] = ()

    def replace(self, **changes) -> GenerationConfig:
        """A copy with the given fields changed; InvalidArgumentError for a name that is not a field."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise InvalidArgumentError(f"unknown generation argument {', '.join(map(repr, unknown))}: the "
                                       f"arguments are {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    def sampling_params(self) -> SamplingParams:
        """The scheduler's parameters; InvalidArgumentError for a value out of range."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise InvalidArgumentError(what)

        m = self.max_new_tokens
        need(m is None or (isinstance(m, int) and not isinstance(m, bool) and m >= 1),
             f"max_new_tokens must be a positive integer or None, got {m!r}")
        need(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        need(isinstance(self.top_k, int) and self.top_k >= 0, f"top_k must be an integer >= 0, got {self.top_k!r}")
        need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        need(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        need(self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        need(self.seed is None or isinstance(self.seed, int), f"seed must be an integer or None, got {self.seed!r}")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        need(all(isinstance(s, str) and s for s in stop), f"stop must be non-empty strings, got {self.stop!r}")
        return SamplingParams(max_tokens=m, temperature=self.temperature if self.do_sample else 0.0,
                              top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
                              repeat_penalty=self.repetition_penalty, seed=self.seed, stop=stop)


class BitNetModel:
    """A GGUF model ready to generate. Build it with ``from_pretrained``; use it as a context
    manager or call ``close()`` to free its memory."""

    def __init__(self, path: str | os.PathLike, *, n_threads: int = 0, context_length: int = 0,
                 n_parallel: int = 1, n_batch: int = 512, chat_template: str | None = None,
                 generation_config: GenerationConfig | None = None, type_k: str = "f32", type_v: str = "f32",
                 flash_attn: bool = True, use_mmap: bool = True, speculative: str | None = None,
                 speculative_options: dict | None = None):
        """Loads the GGUF file at path. n_threads: 0 for the CPUs this process may use;
        context_length: tokens per sequence, prompt and answer together (0: the model's training
        context, at most 4096); n_parallel: requests generated at the same time; n_batch: most
        prompt tokens per forward pass; chat_template: a built-in template name instead of the
        model's; type_k, type_v, flash_attn: the KV cache types ("f32", "f16", "q8_0") and the
        attention (False: the exact one, f32 only), as run_inference.py's -ctk/-ctv/-fa; use_mmap:
        map the file, or read it into memory (see bindings.Model); speculative: "ngram" for
        speculative decoding by lookup in the prompt and text so far (the same tokens when greedy,
        the same distribution when sampling; fewer forward passes when the text repeats), None:
        off; speculative_options: further bindings.Speculator options (draft_max, ngram_min, ...).
        Raises ModelLoadError (missing or invalid file), InvalidArgumentError, BitnetError."""
        self.path = Path(path)
        for name, value, least in (("n_threads", n_threads, 0), ("context_length", context_length, 0),
                                   ("n_parallel", n_parallel, 1), ("n_batch", n_batch, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InvalidArgumentError(f"{name} must be an integer >= {least}, got {value!r}")
        if n_threads:
            bindings.check_n_threads(n_threads)
        if not self.path.is_file():
            raise ModelLoadError(f"model file {self.path} not found: pass a GGUF file, a Hugging Face checkpoint "
                                 "directory or a Hugging Face id (ORG/NAME)")
        self._closed = True  # until everything below exists
        try:
            self._model = bindings.Model(self.path, use_mmap=use_mmap)
        except BitnetError as e:
            raise ModelLoadError(str(e)) from None
        if chat_template is not None and chat_template not in bindings.chat_template_names():
            raise InvalidArgumentError(f"unknown chat template {chat_template!r}: use one of "
                                       f"{', '.join(bindings.chat_template_names())}")
        self.chat_template = chat_template
        self.n_threads = n_threads or bindings.default_n_threads()
        self.n_batch = n_batch
        self.generation_config = generation_config or GenerationConfig()
        self._context_options = {"type_k": type_k, "type_v": type_v, "flash_attn": flash_attn}
        if speculative not in (None, "ngram"):
            raise InvalidArgumentError(f"speculative must be None or 'ngram', got {speculative!r}")
        self._speculation = {"mode": speculative, **(speculative_options or {})} if speculative else None
        self._engine = SlotEngine(self._model, n_slots=n_parallel, n_ctx=context_length, n_threads=self.n_threads,
                                  n_batch=n_batch, **self._context_options)
        self._scheduler = Scheduler(self._engine, self._model, batch_size=n_batch, queue_size=_QUEUE_SIZE,
                                    speculation=self._speculation)
        self._scheduler.start()
        self._vocab: Vocab | None = None
        self._lock = threading.Lock()
        self._embed_lock = threading.Lock()  # embed() contexts, apart from the scheduler's
        self.last_eval_tokens = 0    # prompt tokens the latest finished request evaluated
        self.last_cached_tokens = 0  # prompt tokens it found in the cache instead
        self.last_generated_tokens = 0
        self._closed = False

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, quant_type: str = "i2_s",
                        embd_type: str | None = None, revision: str | None = None, **kwargs) -> BitNetModel:
        """Loads a GGUF file, a Hugging Face checkpoint directory (converted once to
        ``ggml-model-<quant_type>.gguf`` beside it, as setup_env.py does; later calls load that
        file) or a Hugging Face id (downloaded into the models folder, then the same). kwargs go
        to BitNetModel(). Raises ModelLoadError, InvalidArgumentError, BitnetError."""
        return cls(resolve_gguf(name_or_path, quant_type=quant_type, embd_type=embd_type, revision=revision),
                   **kwargs)

    # ---- model facts ----------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Tokens one request holds, prompt and answer together."""
        return self._engine.n_ctx

    @property
    def chat_template_name(self) -> str | None:
        """The chat template chat() uses: the one given, else the model's recognized one (None: none)."""
        return self.chat_template or self._model.chat_template

    @property
    def n_vocab(self) -> int:
        return self._model.n_vocab

    @property
    def description(self) -> str:
        return self._model.desc

    def metadata(self, key: str) -> str | None:
        """A string value of the GGUF metadata (e.g. "general.name"), None when absent."""
        return self._model.meta_str(key)

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of text; add_bos: begin with the model's BOS token; special: texts of special
        tokens (``<|eot_id|>``) become those tokens."""
        self._check_open()
        return self._model.tokenize(text, add_bos=add_bos, parse_special=special)

    def embed(self, texts: Sequence[str], *, pooling: str | None = None, normalize: bool = True):
        """Embeddings of texts, a float32 array (len(texts), n_embd), for an embedding model
        (bitnet-embedding-0.6b): each text tokenized as bindings.Model.embedding_tokens says,
        pooled by the model's pooling or `pooling` (mean, cls, last), L2-normalized unless
        normalize is False. The texts run together in a context of their own (up to 8 per batch),
        apart from generation's. InvalidArgumentError for no texts, a text of no tokens or an
        unknown pooling."""
        self._check_open()
        ids = [self._model.embedding_tokens(t) for t in texts]
        if not ids or any(not i for i in ids):
            raise InvalidArgumentError("embed needs at least one text, each of at least one token")
        if pooling is not None and pooling not in ("mean", "cls", "last"):
            raise InvalidArgumentError(f"pooling {pooling!r}: use mean, cls or last")
        with self._embed_lock, bindings.Context(self._model, n_ctx=max(map(len, ids)), n_threads=self.n_threads,
                                          n_batch=max(self.n_batch, 512), n_seq_max=min(8, len(ids))) as ctx:
            return ctx.embed(ids, pooling=pooling, normalize=normalize)

    def detokenize(self, tokens: Sequence[int], special: bool = True) -> str:
        """The text of tokens (Hugging Face's decode); special=False leaves control tokens out (text
        for a reader). InvalidArgumentError for an id outside the vocabulary."""
        self._check_open()
        try:
            return self._model.detokenize(list(tokens), special=special)
        except BitnetError as e:
            raise InvalidArgumentError(str(e)) from None

    # ---- generation -----------------------------------------------------------------------------

    def generate(self, prompt: str, config: GenerationConfig | None = None, *, stream: bool = False,
                 **kwargs) -> str | Iterator[str]:
        """The continuation of prompt (after BOS). kwargs: GenerationConfig fields, over config
        (default: this model's generation_config). stream: an iterator of text pieces instead;
        leaving it early cancels the rest. Raises ContextLengthError, InvalidArgumentError."""
        params = self._config(config, kwargs).sampling_params()
        pieces = self._start(self._scheduler, self._prompt_tokens(prompt), params)
        return pieces if stream else "".join(pieces)

    def batch_generate(self, prompts: Sequence[str], config: GenerationConfig | None = None, *,
                       batch_size: int = 4, **kwargs) -> list[str]:
        """generate() of each prompt, the same texts, computed together: up to batch_size sequences
        advance in one forward pass per step, and a prompt waiting for a place takes the first
        one that frees (continuous batching)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(prompts, str):
            raise InvalidArgumentError("batch_generate takes a list of prompts, not one string: use generate()")
        params = self._config(config, kwargs).sampling_params()
        tokens = [self._prompt_tokens(p) for p in prompts]
        if not tokens:
            return []
        # Each sequence ends where it would end alone: at max_new_tokens, or at this model's context.
        n_ctx = self.n_ctx
        if params.max_tokens is not None:
            n_ctx = min(n_ctx, max(map(len, tokens)) + params.max_tokens)
        engine = SlotEngine(self._model, n_slots=min(batch_size, len(tokens)), n_ctx=n_ctx,
                            n_threads=self.n_threads, n_batch=self.n_batch, **self._context_options)
        scheduler = Scheduler(engine, self._model, batch_size=self.n_batch, queue_size=len(tokens),
                              speculation=self._speculation)
        scheduler.start()
        try:
            streams = [self._start(scheduler, t, params) for t in tokens]
            return ["".join(s) for s in streams]
        finally:
            scheduler.close()
            engine.close()

    def chat(self, history: list[dict], message: str | None = None, config: GenerationConfig | None = None, *,
             stream: bool = False, **kwargs) -> str | Iterator[str]:
        """The assistant's answer to the conversation history (OpenAI-style messages: {"role":
        "system" | "user" | "assistant", "content": str}) after the user's message (when given).
        Both are appended to history, so the next call goes on from there. The KV cache is kept
        between calls: only the part of the conversation not already cached is evaluated
        (last_eval_tokens). stream: an iterator of text pieces (history gets the answer when it
        ends, or the part given when left early)."""
        if message is not None:
            history.append({"role": "user", "content": message})
        try:
            params = self._config(config, kwargs).sampling_params()
            pieces = self._start(self._scheduler, self.chat_tokens(history), params)
        except BitnetError:
            if message is not None:
                history.pop()  # not answered: the conversation stays as it was
            raise

        def answer() -> Iterator[str]:
            text = []
            try:
                for piece in pieces:
                    text.append(piece)
                    yield piece
            finally:
                history.append({"role": "assistant", "content": "".join(text)})

        return answer() if stream else "".join(answer())

    def chat_tokens(self, messages: Sequence[dict]) -> list[int]:
        """The conversation rendered with the chat template, up to the assistant's turn, as
        tokens; only the template's own markers become special tokens (a message cannot forge a
        turn). Raises InvalidArgumentError (malformed messages, no chat template)."""
        self._check_open()
        for i, m in enumerate(messages):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise InvalidArgumentError(f"messages[{i}] must be a dict with string 'role' and 'content', got {m!r}")
        with self._lock:
            if self._vocab is None:
                self._vocab = vocab_scan(self._model)
        try:
            return chat_tokens(self._model, self._vocab, chat_render(self._model, messages, self.chat_template))
        except (BitnetError, ChatRenderError) as e:
            raise InvalidArgumentError(f"cannot render this conversation: {e}") from None

    # ---- OpenAI-shaped results (the server's shapes, bitnet/server/shapes.py) -------------------

    def create_completion(self, prompt: str, max_tokens: int | None = 16, temperature: float = 0.8,
                          top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05, repeat_penalty: float = 1.0,
                          seed: int | None = None, stop: str | Sequence[str] | None = None,
                          stream: bool = False) -> dict | Iterator[dict]:
        """An OpenAI completion object (llama-cpp-python's parameters and defaults; temperature
        0: greedy), or with stream an iterator of completion chunks."""
        params = self._openai_params(max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop)
        head = shapes.completion_head(shapes.model_id(self.path))
        finished: list[Finished] = []
        pieces = self._start(self._scheduler, self._prompt_tokens(prompt), params, finished.append)
        if not stream:
            text = "".join(pieces)
            return shapes.completion(head, text, finished[0])

        def chunks() -> Iterator[dict]:
            for piece in pieces:
                yield shapes.completion_chunk(head, piece, None)
            yield shapes.completion_chunk(head, None, finished[0].reason)

        return chunks()

    def create_chat_completion(self, messages: Sequence[dict], max_tokens: int | None = None,
                               temperature: float = 0.2, top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05,
                               repeat_penalty: float = 1.0, seed: int | None = None,
                               stop: str | Sequence[str] | None = None, stream: bool = False) -> dict | Iterator[dict]:
        """An OpenAI chat.completion object for messages (llama-cpp-python's parameters and
        defaults; max_tokens None: until the end of the turn or a full context), or with stream an
        iterator of chat.completion.chunk objects. messages is not changed."""
        params = self._openai_params(max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop)
        head = shapes.chat_head(shapes.model_id(self.path))
        finished: list[Finished] = []
        pieces = self._start(self._scheduler, self.chat_tokens(list(messages)), params, finished.append)
        if not stream:
            text = "".join(pieces)
            return shapes.chat_completion(head, text, finished[0])

        def chunks() -> Iterator[dict]:
            yield shapes.chat_first_chunk(head)
            for piece in pieces:
                yield shapes.chat_chunk(head, piece, None)
            yield shapes.chat_chunk(head, None, finished[0].reason)

        return chunks()

    # ---- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the scheduler (requests in flight fail) and frees the model and its KV cache."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._scheduler.close()
        self._engine.close()
        self._model.close()

    def __enter__(self) -> BitNetModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BitNetModel({str(self.path)!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads})"

    # ---- plumbing -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        # The engine's objects are gone after close(): a call then would reach freed memory.
        if self._closed:
            raise BitnetError("this BitNetModel is closed")

    def _config(self, config: GenerationConfig | None, kwargs: dict) -> GenerationConfig:
        config = config if config is not None else self.generation_config
        if not isinstance(config, GenerationConfig):
            raise InvalidArgumentError(f"config must be a GenerationConfig, got {type(config).__name__}")
        return config.replace(**kwargs) if kwargs else config

    def _openai_params(self, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop) -> SamplingParams:
        return GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                min_p=min_p, repetition_penalty=repeat_penalty, do_sample=temperature > 0,
                                seed=seed, stop=stop or ()).sampling_params()

    def _prompt_tokens(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise InvalidArgumentError(f"a prompt must be a str, got {type(prompt).__name__}")
        tokens = self.tokenize(prompt, add_bos=True)
        if not tokens:
            raise InvalidArgumentError("the prompt is empty (and this model has no BOS token to start from)")
        return tokens

    def _start(self, scheduler: Scheduler, tokens: list[int], params: SamplingParams,
               on_finish: Callable[[Finished], None] | None = None) -> Iterator[str]:
        """Submits one request now (so that its errors are raised here) and returns the iterator
        of its text; closing the iterator early cancels the request."""
        self._check_open()
        if len(tokens) >= scheduler.n_ctx:
            raise ContextLengthError(f"the prompt is {len(tokens)} tokens, and a request's context holds "
                                     f"{scheduler.n_ctx}, prompt and answer together: shorten it or load the "
                                     "model with a larger context_length")
        events: queue.SimpleQueue = queue.SimpleQueue()
        req = Request(tokens, params, events.put)
        scheduler.submit(req)

        def pieces() -> Iterator[str]:
            try:
                while True:
                    ev = events.get()
                    if isinstance(ev, Delta):
                        yield ev.text
                    elif isinstance(ev, Finished):
                        self.last_eval_tokens = ev.prompt_tokens - ev.cached_tokens
                        self.last_cached_tokens = ev.cached_tokens
                        self.last_generated_tokens = ev.completion_tokens
                        if on_finish is not None:
                            on_finish(ev)
                        return
                    else:
                        raise BitnetError(ev.message)
            finally:
                scheduler.cancel(req)  # a no-op once finished

        return pieces()


# ---- from_pretrained's sources --------------------------------------------------------------------

def resolve_gguf(name_or_path: str | os.PathLike, quant_type: str = "i2_s", embd_type: str | None = None,
                 revision: str | None = None) -> Path:
    """The GGUF file for a GGUF path, a Hugging Face checkpoint directory (converted when its GGUF
    is missing or stale) or a Hugging Face id (downloaded first). Raises ModelLoadError."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return _checkpoint_gguf(path, quant_type, embd_type)
    text = str(name_or_path)
    parts = text.split("/")
    if len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and not os.path.isabs(text):
        return _hub_gguf(text, quant_type, embd_type, revision)
    raise ModelLoadError(f"{path} not found: pass a GGUF file, a Hugging Face checkpoint directory or a Hugging "
                         "Face id (ORG/NAME)")


def _checkpoint_gguf(model_dir: Path, quant_type: str, embd_type: str | None) -> Path:
    from bitnet.convert.hf import FILE_TYPES, convert, gguf_for

    if quant_type not in FILE_TYPES:
        raise InvalidArgumentError(f"quant_type {quant_type!r} is not one of {', '.join(FILE_TYPES)}")
    if not (model_dir / "config.json").is_file():
        ggufs = sorted(model_dir.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        found = f"{len(ggufs)} GGUF files" if ggufs else "no GGUF file"
        raise ModelLoadError(f"{model_dir} holds no config.json (not a Hugging Face checkpoint) and {found}: "
                             "pass the GGUF file itself or a checkpoint directory")
    try:
        gguf, embd, current = gguf_for(model_dir, quant_type, embd_type)
        if not current:
            click.echo(f"converting {model_dir} to {gguf.name} ({quant_type}, embeddings {embd}); later loads "
                       "use that file", err=True)
            convert(model_dir, gguf, outtype=quant_type, embd_type=embd)
    except click.ClickException as e:  # the converter's bad-input errors (BitnetError is one)
        raise ModelLoadError(f"cannot convert {model_dir}: {e.format_message()}") from None
    except OSError as e:
        raise ModelLoadError(f"cannot convert {model_dir}: {e}") from None
    return gguf


def _hub_gguf(repo_id: str, quant_type: str, embd_type: str | None, revision: str | None) -> Path:
    from bitnet import hub

    known = hub.find_known(repo_id)
    try:
        model_dir = hub.download(known.repo_id if known else repo_id, revision=revision,
                                 allow_patterns=known.allow_patterns if known else None)
    except BitnetError as e:
        raise ModelLoadError(str(e).replace("--model-dir DIR", "from_pretrained(DIR)")) from None
    if known is not None and known.gguf:
        return model_dir / known.gguf
    return _checkpoint_gguf(model_dir, quant_type, embd_type)
