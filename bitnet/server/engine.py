"""The server's engine layer: a batch of sequences advanced by one forward step at a time.

The scheduler (scheduler.py) talks to the engine only through ``BatchEngine``: each step hands it,
for some of its ``n_slots`` sequence slots, the next tokens of that sequence (a prompt chunk, or the
one token just sampled) and whether the logits after them are wanted; ``free`` forgets a slot's
tokens and ``truncate`` keeps a prefix of them, for the next request to reuse. Positions are
implicit: a slot's tokens follow the ones it already holds.

``SlotEngine`` implements it over the engine's multi-sequence call: a step is ONE
``bitnet_decode_batch`` over the entries' tokens concatenated (``seq_ids`` = the entry's slot,
``positions`` = the slot's length + 0, 1, ...; the last token of each entry that wants logits is
flagged), so every weight matrix is read once per step for all the streams; ``free`` is
``bitnet_seq_clear``. Each slot has its own KV cache of ``n_ctx`` positions in one context.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitnet.bindings import BitnetError, Context, Model, Sampler, Speculator


@dataclass(frozen=True)
class StepEntry:
    """Tokens appended to one slot in one step.

    slot: which sequence (0 .. n_slots-1); tokens: at least one token id, placed right after the
    slot's cached tokens; want_logits: return the logits that follow the last of them; verify:
    keep the logits of every token for SlotEngine.verify (none are returned)."""

    slot: int
    tokens: Sequence[int]
    want_logits: bool
    verify: bool = False  # speculative: the pending token and a draft, verified by verify()


class BatchEngine(abc.ABC):
    """A model with ``n_slots`` independent sequences of at most ``n_ctx`` tokens each.

    Not thread-safe: one thread (the scheduler's) owns it."""

    n_slots: int
    n_ctx: int  # tokens one slot can hold, prompt and generated text together
    n_vocab: int

    @abc.abstractmethod
    def step(self, entries: Sequence[StepEntry]) -> dict[int, np.ndarray]:
        """Runs one forward step over all entries (at most one per slot) and returns, for each
        entry with want_logits, ``{slot: logits}`` (float32 [n_vocab], owned by the caller).

        The caller keeps every slot within n_ctx (``n_past(slot) + len(tokens) <= n_ctx``). Raises
        BitnetError when the engine fails; the slots of the step are then in an unknown state and
        must be freed."""

    @abc.abstractmethod
    def free(self, slot: int) -> None:
        """Forgets the slot's tokens; its next step starts at position 0."""

    @abc.abstractmethod
    def truncate(self, slot: int, n_keep: int) -> None:
        """Keeps the slot's first n_keep tokens; its next step continues after them."""

    @abc.abstractmethod
    def n_past(self, slot: int) -> int:
        """Tokens the slot holds."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the engine's memory; the engine is unusable afterwards."""


class SlotEngine(BatchEngine):
    """BatchEngine over one engine context with ``n_slots`` sequence slots (KV caches of n_ctx
    positions each): a step is one bitnet_decode_batch."""

    def __init__(self, model: Model, n_slots: int, n_ctx: int, n_threads: int, n_batch: int = 512,
                 **context_options):
        """context_options: Context's type_k, type_v, flash_attn, exact_output."""
        if n_slots < 1:
            raise BitnetError(f"the number of slots must be at least 1, got {n_slots}")
        self.n_slots = n_slots
        self.n_vocab = model.n_vocab
        # Requests sample from whole logits rows with their own top-k, top-p, min-p and penalties,
        # which certified output (include/bitnet.h) makes exact only for the top rows: the slots
        # ask for every logit exact unless told otherwise.
        context_options.setdefault("exact_output", True)
        # n_batch bounds one step: a prompt chunk plus one token per generating slot.
        self._ctx = Context(model, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch + n_slots,
                            n_seq_max=n_slots, **context_options)
        self.n_ctx = self._ctx.n_ctx
        self._first: dict[int, tuple[int, int]] = {}  # slot -> (its first token's index, its count) in the last step

    def speculator(self, model: Model, sampler: Sampler, **options) -> Speculator:
        """A Speculator for one slot of this engine (options: those of bindings.Speculator)."""
        return Speculator(model, self._ctx, sampler, **options)

    def verify(self, slot: int, spec: Speculator, sampler: Sampler) -> list[int]:
        """After a step holding a verify entry of slot: the tokens its draft yields (kept guesses
        plus one); the slot then holds the pending token and the kept guesses only."""
        first, n_fed = self._first[slot]
        out = spec.verify(self._ctx, first, sampler)
        # The step appended the pending token and the whole draft: keep it and the kept guesses.
        self._ctx.seq_truncate(slot, self._ctx.seq_length(slot) - n_fed + len(out))
        return out

    def step(self, entries: Sequence[StepEntry]) -> dict[int, np.ndarray]:
        tokens: list[int] = []
        seqs: list[int] = []
        positions: list[int] = []
        want: list[bool] = []
        wanted: list[tuple[int, int]] = []  # (slot, index of its last token)
        for e in entries:
            start = self._ctx.seq_length(e.slot)
            last = len(e.tokens) - 1
            self._first[e.slot] = (len(tokens), len(e.tokens))
            for j, t in enumerate(e.tokens):
                tokens.append(t)
                seqs.append(e.slot)
                positions.append(start + j)
                want.append(e.verify or (e.want_logits and j == last))
            if e.want_logits and not e.verify:
                wanted.append((e.slot, len(tokens) - 1))
        if not tokens:
            return {}
        rows = self._ctx.decode_batch(tokens, seqs, positions, want)
        # rows holds the flagged tokens in batch order; a verify entry's rows are not returned.
        row_of = {t: r for r, t in enumerate(i for i, w in enumerate(want) if w)}
        return {slot: rows[row_of[t]] for slot, t in wanted}

    def free(self, slot: int) -> None:
        self._ctx.seq_clear(slot)

    def truncate(self, slot: int, n_keep: int) -> None:
        self._ctx.seq_truncate(slot, n_keep)

    def n_past(self, slot: int) -> int:
        return self._ctx.seq_length(slot)

    def close(self) -> None:
        self._ctx.close()
