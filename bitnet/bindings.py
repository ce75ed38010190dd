"""ctypes bindings over the engine's C API (include/bitnet.h, build/lib/libbitnet.so).

Thin and typed: a Model owns a bitnet_model*, a Context a bitnet_context* (KV cache slots for one
or several sequences, advanced together by Context.decode_batch); engine failures raise
BitnetError carrying the engine's own message. Used by the tests, the Python tools and the server.
"""

from __future__ import annotations

import array
import ctypes
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bitnet.common import engine_dir
from bitnet.errors import BitnetError


class _ContextParams(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_int32), ("n_threads", ctypes.c_int32), ("n_batch", ctypes.c_int32),
                ("n_seq_max", ctypes.c_int32), ("type_k", ctypes.c_int32), ("type_v", ctypes.c_int32),
                ("flash_attn", ctypes.c_int32), ("exact_output", ctypes.c_int32),
                ("certified_top_k", ctypes.c_int32)]


# Embedding poolings by the numbers of bitnet_model_pooling_type (llama.cpp's).
POOLING_TYPES = ("none", "mean", "cls", "last")
POOLING_IDS = {name: i for i, name in enumerate(POOLING_TYPES)}

# KV cache types by their names in -ctk/-ctv (ggml type ids, as include/bitnet.h numbers them).
KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}


class _ModelParams(ctypes.Structure):
    _fields_ = [("use_mmap", ctypes.c_int32)]


class _ChatMessage(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


class _SamplerParams(ctypes.Structure):
    _fields_ = [
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("repeat_last_n", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("presence_penalty", ctypes.c_float),
        ("frequency_penalty", ctypes.c_float),
    ]


class _SpecParams(ctypes.Structure):
    _fields_ = [
        ("mode", ctypes.c_int32),
        ("draft_max", ctypes.c_int32),
        ("draft_min", ctypes.c_int32),
        ("draft_p_min", ctypes.c_float),
        ("ngram_min", ctypes.c_int32),
        ("ngram_max", ctypes.c_int32),
        ("draft_model", ctypes.c_void_p),
        ("draft_n_threads", ctypes.c_int32),
        ("replay_tokens", ctypes.POINTER(ctypes.c_int32)),
        ("n_replay", ctypes.c_int32),
        ("replay_error", ctypes.c_float),
        ("seed", ctypes.c_uint64),
    ]


class _SpecStats(ctypes.Structure):
    _fields_ = [("steps", ctypes.c_int64), ("drafted", ctypes.c_int64), ("accepted", ctypes.c_int64),
                ("generated", ctypes.c_int64)]


# Speculation modes by the names bitnet-cli's --spec takes (BITNET_SPEC_* of include/bitnet.h).
SPEC_MODES = {"off": 0, "ngram": 1, "draft": 2, "replay": 3}

_lib: ctypes.CDLL | None = None
_lib_path: Path | None = None


def default_library_path() -> Path:
    """libbitnet.so of bitnet.common.engine_dir(): BITNET_BUILD_DIR, the wheel's, or the clone's."""
    return engine_dir() / "lib" / "libbitnet.so"


def load_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Loads libbitnet once (later calls return the same handle)."""
    global _lib, _lib_path
    path = Path(path) if path else default_library_path()
    if _lib is not None:
        if _lib_path != path.resolve():
            raise BitnetError(f"libbitnet already loaded from {_lib_path}, cannot also load {path}")
        return _lib
    if not path.is_file():
        raise BitnetError(f"{path} not found: build the engine first (python setup_env.py)")
    lib = ctypes.CDLL(str(path))
    c = ctypes
    P = c.c_void_p
    sigs = {
        "bitnet_last_error": (c.c_char_p, []),
        "bitnet_isa": (c.c_char_p, []),
        "bitnet_model_default_params": (_ModelParams, []),
        "bitnet_model_load_with_params": (P, [c.c_char_p, _ModelParams]),
        "bitnet_model_free": (None, [P]),
        "bitnet_model_n_vocab": (c.c_int32, [P]),
        "bitnet_model_n_ctx_train": (c.c_int32, [P]),
        "bitnet_model_n_embd": (c.c_int32, [P]),
        "bitnet_model_n_layer": (c.c_int32, [P]),
        "bitnet_model_n_params": (c.c_uint64, [P]),
        "bitnet_model_size": (c.c_uint64, [P]),
        "bitnet_model_desc": (c.c_char_p, [P]),
        "bitnet_model_meta_str": (c.c_char_p, [P, c.c_char_p]),
        "bitnet_token_bos": (c.c_int32, [P]),
        "bitnet_token_eos": (c.c_int32, [P]),
        "bitnet_token_eot": (c.c_int32, [P]),
        "bitnet_token_is_eog": (c.c_int, [P, c.c_int32]),
        "bitnet_token_is_control": (c.c_int, [P, c.c_int32]),
        "bitnet_tokenize": (c.c_int32, [P, c.c_char_p, c.c_int32, c.POINTER(c.c_int32), c.c_int32, c.c_int, c.c_int]),
        "bitnet_token_to_piece": (c.c_int32, [P, c.c_int32, c.c_char_p, c.c_int32]),
        "bitnet_detokenize": (c.c_int32, [P, c.POINTER(c.c_int32), c.c_int32, c.c_char_p, c.c_int32]),
        "bitnet_context_default_params": (_ContextParams, []),
        "bitnet_context_new": (P, [P, _ContextParams]),
        "bitnet_context_free": (None, [P]),
        "bitnet_context_n_ctx": (c.c_int32, [P]),
        "bitnet_context_n_past": (c.c_int32, [P]),
        "bitnet_context_n_threads": (c.c_int32, [P]),
        "bitnet_context_n_seq_max": (c.c_int32, [P]),
        "bitnet_default_n_threads": (c.c_int32, []),
        "bitnet_max_n_threads": (c.c_int32, []),
        "bitnet_context_truncate": (None, [P, c.c_int32]),
        "bitnet_model_output_compact": (c.c_char_p, [P]),
        "bitnet_context_output_stats": (None, [P, c.POINTER(c.c_int64), c.POINTER(c.c_int64)]),
        "bitnet_decode": (c.c_int, [P, c.POINTER(c.c_int32), c.c_int32, c.c_int]),
        "bitnet_get_logits": (c.POINTER(c.c_float), [P, c.c_int32]),
        "bitnet_decode_batch": (c.c_int32, [P, c.POINTER(c.c_int32), c.POINTER(c.c_int32), c.POINTER(c.c_int32),
                                            c.POINTER(c.c_int8), c.c_int32]),
        "bitnet_get_logits_ith": (c.POINTER(c.c_float), [P, c.c_int32]),
        "bitnet_seq_length": (c.c_int32, [P, c.c_int32]),
        "bitnet_seq_clear": (None, [P, c.c_int32]),
        "bitnet_seq_truncate": (None, [P, c.c_int32, c.c_int32]),
        "bitnet_model_pooling_type": (c.c_int32, [P]),
        "bitnet_embed": (c.c_int32, [P, c.POINTER(c.c_int32), c.POINTER(c.c_int32), c.c_int32, c.c_int32,
                                     c.c_int32, c.POINTER(c.c_float)]),
        "bitnet_sampler_default_params": (_SamplerParams, []),
        "bitnet_sampler_new": (P, [c.POINTER(_SamplerParams)]),
        "bitnet_sampler_free": (None, [P]),
        "bitnet_sampler_accept": (None, [P, c.c_int32]),
        "bitnet_sampler_reset": (None, [P]),
        "bitnet_sampler_set_logit_bias": (c.c_int, [P, c.POINTER(c.c_int32), c.POINTER(c.c_float), c.c_int32]),
        "bitnet_sampler_sample": (c.c_int32, [P, c.POINTER(c.c_float), c.c_int32]),
        "bitnet_spec_default_params": (_SpecParams, []),
        "bitnet_spec_new": (P, [P, P, c.POINTER(_SpecParams), P]),
        "bitnet_spec_free": (None, [P]),
        "bitnet_spec_step": (c.c_int32, [P, P, c.c_int32, P, c.POINTER(c.c_int32), c.c_int32,
                                         c.POINTER(c.c_int32), c.c_int32]),
        "bitnet_spec_draft": (c.c_int32, [P, c.POINTER(c.c_int32), c.c_int32, c.POINTER(c.c_int32), c.c_int32]),
        "bitnet_spec_verify": (c.c_int32, [P, P, c.c_int32, P, c.POINTER(c.c_int32)]),
        "bitnet_spec_get_stats": (_SpecStats, [P]),
        "bitnet_chat_template_names": (c.c_char_p, []),
        "bitnet_chat_template_name": (c.c_char_p, [P]),
        "bitnet_chat_apply": (c.c_int32, [P, c.c_char_p, c.POINTER(_ChatMessage), c.c_size_t, c.c_bool,
                                          c.c_char_p, c.c_int32]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    _lib, _lib_path = lib, path.resolve()
    return lib


def default_n_threads(library: str | os.PathLike | None = None) -> int:
    """The CPUs this process may use (affinity mask and cgroup CPU quota, at least 1): the thread
    count n_threads=0 gives. Without a usable library (not built, or built before this call
    existed), the affinity mask alone."""
    try:
        return int(load_library(library).bitnet_default_n_threads())
    except (BitnetError, OSError, AttributeError):
        return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_n_threads(n: int, library: str | os.PathLike | None = None) -> str | None:
    """Raises BitnetError for a thread count the engine refuses (above 4 per usable CPU, or 1024);
    returns a warning line for one above the usable CPUs, else None."""
    usable = default_n_threads(library)
    most = min(4 * usable, 1024)
    if n > most:
        raise BitnetError(f"-t {n} is too many threads: this process may use {usable} CPU(s), and at most {most} "
                          f"threads (4 per CPU, at most 1024) are accepted; use -t {usable}")
    if n > usable:
        return (f"warning: -t {n} is more threads than the {usable} CPU(s) this process may use; they will take "
                f"turns on the same cores (use -t {usable})")
    return None


def _error() -> BitnetError:
    return BitnetError(load_library().bitnet_last_error().decode("utf-8", "replace"))


INT32_MIN = -(2**31)


class _Handle:
    """Owns one engine object: freed by close(), at the end of a with block, or when collected."""

    _free = ""  # name of the C function that frees it
    _p = None

    def close(self) -> None:
        if self._p:
            getattr(self._lib, self._free)(self._p)
            self._p = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Model(_Handle):
    """A loaded GGUF model. Use as a context manager or call close()."""
    _free = "bitnet_model_free"

    def __init__(self, path: str | os.PathLike, library: str | os.PathLike | None = None, use_mmap: bool = True):
        """use_mmap: map the file (a fast start, but the file must not change while the model is
        loaded: truncating it kills the process with SIGBUS, rewriting it changes the weights), or
        read it into memory (a slower start; the file may then change). Raises BitnetError."""
        self._lib = load_library(library)
        params = self._lib.bitnet_model_default_params()
        params.use_mmap = 1 if use_mmap else 0
        self._p = self._lib.bitnet_model_load_with_params(os.fsencode(path), params)
        if not self._p:
            raise _error()


    @property
    def n_vocab(self) -> int:
        return self._lib.bitnet_model_n_vocab(self._p)

    @property
    def n_ctx_train(self) -> int:
        return self._lib.bitnet_model_n_ctx_train(self._p)

    @property
    def desc(self) -> str:
        return self._lib.bitnet_model_desc(self._p).decode()

    @property
    def output_compact(self) -> str | None:
        """The type of the compact output copy certified output scores through ("Q6_K", ...), or None."""
        t = self._lib.bitnet_model_output_compact(self._p)
        return t.decode() if t else None

    @property
    def n_embd(self) -> int:
        return self._lib.bitnet_model_n_embd(self._p)

    @property
    def pooling(self) -> str:
        """The embedding model's pooling: "none" (not an embedding model), "mean", "cls" or "last"."""
        return POOLING_TYPES[self._lib.bitnet_model_pooling_type(self._p)]

    @property
    def bos(self) -> int:
        return self._lib.bitnet_token_bos(self._p)

    @property
    def eos(self) -> int:
        return self._lib.bitnet_token_eos(self._p)

    def meta_str(self, key: str) -> str | None:
        v = self._lib.bitnet_model_meta_str(self._p, key.encode())
        return None if v is None else v.decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.bitnet_token_is_eog(self._p, token))

    def is_control(self, token: int) -> bool:
        """A control token (BOS, EOS, <|eot_id|>, ...): markup, left out of text for display."""
        return bool(self._lib.bitnet_token_is_control(self._p, token))

    def tokenize(self, text: str | bytes, add_bos: bool = False, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        cap = len(data) + 8
        for _ in range(2):
            out = (ctypes.c_int32 * cap)()
            n = self._lib.bitnet_tokenize(self._p, data, len(data), out, cap, int(add_bos), int(parse_special))
            if n == INT32_MIN:
                raise _error()
            if n >= 0:
                return list(out[:n])
            cap = -n
        raise BitnetError("tokenize: buffer size changed between calls")

    def embedding_tokens(self, text: str | bytes) -> list[int]:
        """Tokens of text as an embedding model reads it (bitnet-embedding does the same): special
        tokens parsed, no BOS, and ending with EOS when the model pools the last token (appended
        unless already there: bitnet-embedding's tokenizer appends <|endoftext|>)."""
        ids = self.tokenize(text, add_bos=False, parse_special=True)
        if self.pooling == "last" and self.eos >= 0 and (not ids or ids[-1] != self.eos):
            ids.append(self.eos)
        return ids

    def token_to_piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.bitnet_token_to_piece(self._p, token, buf, 64)
        if n == INT32_MIN:
            raise _error()
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.bitnet_token_to_piece(self._p, token, buf, -n)
        return buf.raw[:n]

    def detokenize_bytes(self, tokens: Sequence[int], special: bool = True) -> bytes:
        """The bytes of ``tokens`` as text, as Hugging Face's decode gives them (for SentencePiece
        vocabularies without the dummy-prefix space, which is where this differs from joining
        token_to_piece). ``special``: control tokens appear as their text, as in Hugging Face's
        default (``skip_special_tokens=False``); ``special=False`` leaves them out, for text shown
        to a reader (``skip_special_tokens=True``, llama.cpp without --special). Raises
        BitnetError for an invalid id."""
        if not special:  # is_control is false for an invalid id, which the engine then refuses
            tokens = [t for t in tokens if not self.is_control(t)]
        ids = (ctypes.c_int32 * max(len(tokens), 1))(*tokens)
        cap = 16 * len(tokens) + 16
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            n = self._lib.bitnet_detokenize(self._p, ids, len(tokens), buf, cap)
            if n == INT32_MIN:
                raise _error()
            if n >= 0:
                return buf.raw[:n]
            cap = -n
        raise BitnetError("detokenize: text length changed between calls")

    def detokenize(self, tokens: Sequence[int], special: bool = True) -> str:
        """detokenize_bytes decoded as UTF-8 (ill-formed bytes become U+FFFD)."""
        return self.detokenize_bytes(tokens, special).decode("utf-8", "replace")

    @property
    def chat_template(self) -> str | None:
        """The built-in chat template recognized in the model's tokenizer.chat_template ("bitnet",
        "llama3", ...), or None when it has none or an unknown one."""
        v = self._lib.bitnet_chat_template_name(self._p)
        return None if v is None else v.decode()

    def chat_apply(self, messages: Sequence[dict[str, str]], add_assistant: bool = True,
                   template: str | None = None) -> str:
        """The conversation ``[{"role": ..., "content": ...}, ...]`` as prompt text, rendered like
        transformers' apply_chat_template. ``template``: a built-in name or a Jinja text (None: the
        model's own). Tokenize the result with ``add_bos=False, parse_special=True``. Raises
        BitnetError for an unknown template."""
        keep = [(m["role"].encode("utf-8"), m["content"].encode("utf-8")) for m in messages]
        arr = (_ChatMessage * max(len(keep), 1))(*[_ChatMessage(r, t) for r, t in keep])
        tmpl = None if template is None else template.encode("utf-8")
        cap = 256 + sum(len(r) + len(t) for r, t in keep) * 2
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            n = self._lib.bitnet_chat_apply(self._p, tmpl, arr, len(keep), add_assistant, buf, cap)
            if n < 0:
                raise _error()
            if n < cap:
                return buf.raw[:n].decode("utf-8")
            cap = n + 1
        raise BitnetError("chat_apply: text length changed between calls")


def chat_template_names() -> list[str]:
    """Names of the engine's built-in chat templates."""
    return load_library().bitnet_chat_template_names().decode().split(", ")


class Context(_Handle):
    """KV cache and forward pass over a Model, for ``n_seq_max`` independent sequences (slots
    0 .. n_seq_max-1), each holding up to ``n_ctx`` tokens.

    ``decode``, ``n_past`` and ``truncate`` work on sequence 0; ``decode_batch`` advances any
    sequences together in one forward pass (each weight matrix read once for all of them), and
    ``seq_length``/``seq_clear``/``seq_truncate`` manage the slots. Not thread-safe."""
    _free = "bitnet_context_free"

    def __init__(self, model: Model, n_ctx: int = 0, n_threads: int = 0, n_batch: int = 512,
                 n_seq_max: int = 1, type_k: str = "f32", type_v: str = "f32", flash_attn: bool = True,
                 exact_output: bool = False, certified_top_k: int = 1):
        """n_ctx: positions per sequence (0: the model's training context); n_threads: 0 for
        default_n_threads(), the usable CPUs; n_batch: most tokens per forward pass (longer calls are split); n_seq_max: sequence
        slots (the KV cache takes n_seq_max times the memory); type_k/type_v: KV cache types
        ("f32", "f16", "q8_0"); flash_attn False: the exact attention in torch's summation order
        (needs f32 K and V); exact_output: every logit from the exact output matrix, not only the
        certified top certified_top_k (see include/bitnet.h: certified output). Raises BitnetError."""
        self.model = model
        self._lib = model._lib
        for name, t in (("type_k", type_k), ("type_v", type_v)):
            if t not in KV_TYPES:
                raise BitnetError(f"{name} {t!r} is not a KV cache type: use one of {', '.join(KV_TYPES)}")
        params = _ContextParams(n_ctx, n_threads, n_batch, n_seq_max, KV_TYPES[type_k], KV_TYPES[type_v],
                                1 if flash_attn else 0, 1 if exact_output else 0, certified_top_k)
        self._p = self._lib.bitnet_context_new(model._p, params)
        if not self._p:
            raise _error()
        if self.n_ctx > model.n_ctx_train > 0:
            warnings.warn(f"a context of {self.n_ctx} tokens is longer than the {model.n_ctx_train} the model was "
                          f"trained on; text past {model.n_ctx_train} tokens may lose coherence", stacklevel=2)

    @property
    def n_past(self) -> int:
        """Tokens cached for sequence 0."""
        return self._lib.bitnet_context_n_past(self._p)

    @property
    def n_ctx(self) -> int:
        """Positions per sequence."""
        return self._lib.bitnet_context_n_ctx(self._p)

    @property
    def n_seq_max(self) -> int:
        """Sequence slots."""
        return self._lib.bitnet_context_n_seq_max(self._p)

    def output_stats(self) -> tuple[int, int]:
        """(tokens scored through the model's compact output copy, rows rescored exactly for them)."""
        tokens, rescored = ctypes.c_int64(0), ctypes.c_int64(0)
        self._lib.bitnet_context_output_stats(self._p, ctypes.byref(tokens), ctypes.byref(rescored))
        return tokens.value, rescored.value

    def truncate(self, n_keep: int) -> None:
        """Keeps the first n_keep tokens of sequence 0."""
        self._lib.bitnet_context_truncate(self._p, n_keep)

    def decode(self, tokens: Sequence[int], logits_all: bool = False) -> np.ndarray:
        """Runs tokens after sequence 0's cached ones; returns logits [len(tokens) or 1, n_vocab]
        (a copy). Raises BitnetError (context full, invalid token)."""
        arr = (ctypes.c_int32 * len(tokens))(*tokens)
        if self._lib.bitnet_decode(self._p, arr, len(tokens), int(logits_all)) != 0:
            raise _error()
        rows = range(len(tokens)) if logits_all else [-1]
        return self._logits(self._lib.bitnet_get_logits, rows)

    def decode_batch(self, tokens: Sequence[int], seq_ids: Sequence[int], positions: Sequence[int],
                     want_logits: Sequence[bool] | None = None) -> np.ndarray:
        """Runs one batch of tokens of any sequences: token i of sequence ``seq_ids[i]`` at position
        ``positions[i]``. Each sequence's positions continue its cache with no gap (its first token
        at ``seq_length(seq)``, the next at +1, ...); tokens of different sequences may interleave.
        ``want_logits[i]`` asks for token i's logits (None: only the last token's).

        Returns the logits of the flagged tokens in batch order, float32 [n_flagged, n_vocab] (a
        copy). Per sequence they equal what ``decode`` gives on that sequence alone. Raises
        BitnetError with the engine's message, nothing decoded, for a sequence id out of range, a
        position that does not continue its sequence, a sequence whose context is full, or a token
        id outside the vocabulary; ValueError when the lists' lengths differ."""
        n = len(tokens)
        if len(seq_ids) != n or len(positions) != n or (want_logits is not None and len(want_logits) != n):
            raise ValueError(f"decode_batch: tokens, seq_ids, positions and want_logits must have the same "
                             f"length (got {n}, {len(seq_ids)}, {len(positions)}, "
                             f"{'None' if want_logits is None else len(want_logits)})")
        # A step of the server or of generate() is one token per sequence, so this runs once per
        # generated token: ctypes arrays cost a few microseconds where numpy conversions and
        # .ctypes.data_as cost tens. array.array refuses ids outside int32 (c_int32 would wrap them).
        i32 = ctypes.c_int32 * n
        tok, seq, pos = (i32.from_buffer(array.array("i", v)) for v in (tokens, seq_ids, positions))
        if want_logits is None:
            want, rows = None, [n - 1] if n else []
        else:
            want = (ctypes.c_int8 * n)(*(1 if w else 0 for w in want_logits))
            rows = [i for i, w in enumerate(want_logits) if w]
        if self._lib.bitnet_decode_batch(self._p, tok, seq, pos, want, n) != 0:
            raise _error()
        return self._logits(self._lib.bitnet_get_logits_ith, rows)

    def embed(self, texts: Sequence[Sequence[int]], pooling: str | None = None,
              normalize: bool = True) -> np.ndarray:
        """Embeddings (len(texts), n_embd) float32 of token lists (see bitnet_embed): pooled by the
        model's pooling or `pooling` (mean, cls, last), L2-normalized unless normalize is False.
        Raises BitnetError for empty or overlong texts and ValueError for an unknown pooling."""
        if pooling is not None and pooling not in POOLING_IDS:
            raise ValueError(f"pooling {pooling!r}: use one of {', '.join(p for p in POOLING_IDS if p != 'none')}")
        lens = np.array([len(t) for t in texts], dtype=np.int32)
        tok = np.ascontiguousarray(np.concatenate([np.asarray(t, dtype=np.int32) for t in texts])
                                   if len(texts) else np.zeros(0, np.int32), dtype=np.int32)
        out = np.empty((len(texts), self._lib.bitnet_model_n_embd(self.model._p)), dtype=np.float32)
        i32 = ctypes.POINTER(ctypes.c_int32)
        rc = self._lib.bitnet_embed(self._p, tok.ctypes.data_as(i32), lens.ctypes.data_as(i32), len(texts),
                                    -1 if pooling is None else POOLING_IDS[pooling], int(normalize),
                                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        if rc != 0:
            raise _error()
        return out

    def seq_length(self, seq: int) -> int:
        """Tokens cached for sequence seq. Raises BitnetError for an invalid seq."""
        n = self._lib.bitnet_seq_length(self._p, seq)
        if n < 0:
            raise _error()
        return n

    def seq_clear(self, seq: int) -> None:
        """Empties sequence seq (its next token goes to position 0); other sequences keep theirs.
        Raises BitnetError for an invalid seq."""
        self.seq_length(seq)  # validates seq with the engine's message
        self._lib.bitnet_seq_clear(self._p, seq)

    def seq_truncate(self, seq: int, n_keep: int) -> None:
        """Keeps the first n_keep tokens of sequence seq. Raises BitnetError for an invalid seq."""
        self.seq_length(seq)  # validates seq with the engine's message
        self._lib.bitnet_seq_truncate(self._p, seq, n_keep)

    def _logits(self, get, rows) -> np.ndarray:
        n_vocab = self.model.n_vocab
        out = np.empty((len(rows), n_vocab), dtype=np.float32)
        dst, row_bytes = out.ctypes.data, 4 * n_vocab
        for j, i in enumerate(rows):
            p = get(self._p, i)
            if not p:
                raise _error()
            ctypes.memmove(dst + j * row_bytes, p, row_bytes)
        return out

    def generate_greedy(self, prompt: Sequence[int], n: int) -> list[int]:
        """Greedy continuation of n tokens (argmax, first index on ties), stopping at nothing."""
        logits = self.decode(prompt)
        out: list[int] = []
        for i in range(n):
            t = int(np.argmax(logits[-1]))
            out.append(t)
            if i + 1 < n:
                logits = self.decode([t])
        return out


class Sampler(_Handle):
    """Token sampler (greedy when temperature <= 0)."""
    _free = "bitnet_sampler_free"

    def __init__(self, temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repeat_penalty: float = 1.0, repeat_last_n: int = 64, seed: int = 0,
                 presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                 logit_bias: Mapping[int, float] | None = None):
        self._lib = load_library()
        p = _SamplerParams(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed,
                           presence_penalty, frequency_penalty)
        self._p = self._lib.bitnet_sampler_new(ctypes.byref(p))
        if not self._p:
            raise _error()
        if logit_bias:
            self.set_logit_bias(logit_bias)

    def set_logit_bias(self, bias: Mapping[int, float]) -> None:
        """Adds ``bias[token]`` to that token's logit before penalties and cuts (``-inf`` bans it);
        replaces any earlier bias."""
        n = len(bias)
        ids = (ctypes.c_int32 * n)(*(int(t) for t in bias))
        vals = (ctypes.c_float * n)(*(float(v) for v in bias.values()))
        if self._lib.bitnet_sampler_set_logit_bias(self._p, ids, vals, n) != 0:
            raise _error()


    def accept(self, token: int) -> None:
        self._lib.bitnet_sampler_accept(self._p, token)

    def sample(self, logits: np.ndarray) -> int:
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        ptr = logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        return self._lib.bitnet_sampler_sample(self._p, ptr, logits.shape[-1])


class Speculator(_Handle):
    """Speculative decoding of one sequence of contexts like ``ctx`` (include/bitnet.h's
    bitnet_spec): ``mode`` "ngram" (lookup in the prompt and generated text) or "draft" (a draft
    Model with the same vocabulary; it must outlive this object). ``step`` yields the tokens one
    verification pass produces; greedy output is token for token that of plain decoding, sampled
    output has the same distribution. Raises BitnetError (e.g. for a draft model with another
    vocabulary)."""
    _free = "bitnet_spec_free"

    def __init__(self, model: Model, ctx: Context, sampler: Sampler, mode: str = "ngram",
                 draft_model: Model | None = None, draft_max: int = 16, draft_min: int = 0,
                 draft_p_min: float = 0.75, ngram_min: int = 2, ngram_max: int = 4,
                 replay: Sequence[int] = (), replay_error: float = 0.0, seed: int = 0):
        if mode not in SPEC_MODES:
            raise BitnetError(f"speculation mode {mode!r} is unknown: use one of {', '.join(SPEC_MODES)}")
        self._lib = model._lib
        self.draft_model = draft_model  # kept alive as long as this object
        p = self._lib.bitnet_spec_default_params()
        p.mode = SPEC_MODES[mode]
        p.draft_max, p.draft_min, p.draft_p_min = draft_max, draft_min, draft_p_min
        p.ngram_min, p.ngram_max, p.seed = ngram_min, ngram_max, seed
        p.draft_model = draft_model._p if draft_model else None
        self._replay = (ctypes.c_int32 * len(replay))(*replay)
        p.replay_tokens, p.n_replay, p.replay_error = self._replay, len(replay), replay_error
        self._n_draft = 0
        self._p = self._lib.bitnet_spec_new(model._p, ctx._p, ctypes.byref(p), sampler._p)
        if not self._p:
            raise _error()

    def step(self, ctx: Context, sampler: Sampler, history: Sequence[int], n_max: int = 64,
             seq: int = 0) -> list[int]:
        """One step on sequence seq: history is the whole sequence so far, its last token the
        pending one (not yet decoded; the cache holds the others). Returns 1 .. n_max tokens, each
        recorded in sampler; the last is the new pending token."""
        hist = (ctypes.c_int32 * len(history))(*history)
        out = (ctypes.c_int32 * max(n_max, 1))()
        n = self._lib.bitnet_spec_step(self._p, ctx._p, seq, sampler._p, hist, len(history), out, n_max)
        if n < 0:
            raise _error()
        return list(out[:n])

    def draft(self, history: Sequence[int], n_max: int) -> list[int]:
        """The first half of a step for callers that verify several sequences in one batch: up
        to n_max guesses to follow history (whose last token is the pending one)."""
        hist = (ctypes.c_int32 * len(history))(*history)
        out = (ctypes.c_int32 * max(n_max, 1))()
        n = self._lib.bitnet_spec_draft(self._p, hist, len(history), out, max(n_max, 0))
        if n < 0:
            raise _error()
        self._n_draft = n
        return list(out[:n])

    def verify(self, ctx: Context, first: int, sampler: Sampler) -> list[int]:
        """The second half: the pending token and the last draft were tokens first .. first+k of
        ctx's last decode_batch (with logits); returns the kept guesses plus one token (each
        recorded in sampler). The caller truncates the sequence to drop the rest."""
        out = (ctypes.c_int32 * (self._n_draft + 1))()
        n = self._lib.bitnet_spec_verify(self._p, ctx._p, first, sampler._p, out)
        if n < 0:
            raise _error()
        return list(out[:n])

    @property
    def stats(self) -> dict[str, int]:
        """steps (verification passes), drafted, accepted, generated."""
        s = self._lib.bitnet_spec_get_stats(self._p)
        return {"steps": s.steps, "drafted": s.drafted, "accepted": s.accepted, "generated": s.generated}


def isa() -> str:
    """The kernel set the engine chose for this CPU."""
    v = load_library().bitnet_isa()
    if v is None:
        raise _error()
    return v.decode()
