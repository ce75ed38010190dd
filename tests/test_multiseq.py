"""Multi-sequence decoding (bitnet_decode_batch) against each sequence decoded alone.

One context holds several sequences, each in its own KV cache slot; one forward pass advances all
of them. A schedule like a server's runs through it: prompts of different lengths batched together
(their tokens interleaved), then generation steps of one token per sequence, a sequence joining
with its whole prompt in the middle of those steps, one leaving and its cleared slot taken by a new
sequence, one truncated and continued. Every logits row must equal, float for float, the row that
bitnet_decode gives for the same sequence alone in its own context, fed the same tokens in the same
calls.

Why equality must hold, not just closeness. Batching changes which tokens share a matmul, nothing
else a token's result depends on: the ternary projections are integer dot products (exact in any
order) followed by a per-token float rescale; RMSNorm, the activation quantizer, RoPE and the FFN
activation are per token; a token's attention reads only its own slot, over keys [0, pos], and its
summation order depends only on its own sequence's key count (attention_head's n_keys, the
sequence's length after the call, as for that sequence alone); the output matrix (Q6_K/Q8_0, the
converter's default) is an integer product per block plus per-token float sums in a fixed order.
Any difference is a bug: a token reading another slot, a wrong position, or a kernel whose float
sums depend on the batch. The F16 output matrix is the last case today (see its test below).

A sequence of more than 192 tokens is included: from there on the attention sums are split in
blocks whose bounds depend on n_keys, so passing another sequence's (or the batch's) key count
would show.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from bitnet.common import DEFAULT_MODEL_DIR

N_CTX = 256


@pytest.fixture(scope="module")
def tiny_default_gguf(tiny_packed, tmp_path_factory):
    """The tiny dummy model with the converter's default embedding type (Q6_K)."""
    from bitnet.convert.hf import convert

    return convert(tiny_packed, tmp_path_factory.mktemp("multiseq") / "tiny-i2_s.gguf")


class Schedule:
    """Runs steps on one multi-sequence context and, for every logical sequence, the same calls on
    a context of its own; compares the logits rows."""

    def __init__(self, model, n_slots: int, n_batch: int = 512):
        from bitnet.bindings import Context

        self.model = model
        self.ctx = Context(model, n_ctx=N_CTX, n_threads=2, n_batch=n_batch, n_seq_max=n_slots)
        self.alone: dict[int, Context] = {}  # slot -> context of the sequence now in that slot
        self.last: dict[int, int] = {}       # slot -> greedy next token
        self.rng = random.Random(0)
        self.rows = 0

    def start(self, slot: int) -> None:
        from bitnet.bindings import Context

        self.ctx.seq_clear(slot)
        self.alone[slot] = Context(self.model, n_ctx=N_CTX, n_threads=2)

    def leave(self, slot: int) -> None:
        del self.alone[slot]
        del self.last[slot]

    def truncate(self, slot: int, n_keep: int) -> None:
        self.ctx.seq_truncate(slot, n_keep)
        self.alone[slot].truncate(n_keep)

    def step(self, entries: dict[int, list[int]], want_all: frozenset[int] = frozenset()) -> None:
        """entries: slot -> tokens to append (None: its greedy next token). Logits are asked for
        the last token of each entry, and for every token of the slots in want_all. The tokens of
        different slots are interleaved at random, each slot's in order."""
        entries = {s: (t if t is not None else [self.last[s]]) for s, t in entries.items()}
        order = [s for s, toks in entries.items() for _ in toks]
        self.rng.shuffle(order)
        nxt = {s: 0 for s in entries}
        tokens, seqs, positions, want, where = [], [], [], [], []
        for s in order:
            j = nxt[s]
            nxt[s] += 1
            tokens.append(entries[s][j])
            seqs.append(s)
            positions.append(self.ctx.seq_length(s) + j)
            flagged = s in want_all or j == len(entries[s]) - 1
            want.append(flagged)
            if flagged:
                where.append((s, j))
        got = self.ctx.decode_batch(tokens, seqs, positions, want)
        assert got.shape == (len(where), self.model.n_vocab)
        expect = {s: self.alone[s].decode(toks, logits_all=True) for s, toks in entries.items()}
        for row, (s, j) in zip(got, where):
            want_row = expect[s][j]
            same, diff = np.array_equal(row, want_row), float(np.max(np.abs(row - want_row)))
            assert same, (
                f"slot {s}, token {j} of its {len(entries[s])}: batched logits differ from the sequence "
                f"decoded alone (max |diff| {diff:.3g})")
            if j == len(entries[s]) - 1:
                self.last[s] = int(np.argmax(row))
        for s in entries:
            assert self.ctx.seq_length(s) == self.alone[s].n_past
        self.rows += len(where)


def prompt(rng: random.Random, n_vocab: int, n: int) -> list[int]:
    return [rng.randrange(n_vocab) for _ in range(n)]


def run_schedule(path, n_batch: int = 512, long_prompt: int = 200) -> int:
    """The schedule of the module docstring; returns the number of logits rows compared."""
    from bitnet.bindings import Model

    with Model(path) as model:
        rng = random.Random(1)
        s = Schedule(model, n_slots=4, n_batch=n_batch)
        p = {slot: prompt(rng, model.n_vocab, n) for slot, n in enumerate([long_prompt, 7, 1])}
        for slot in p:
            s.start(slot)
        s.step(p, want_all=frozenset({1}))                # prompts together, one with every row
        for _ in range(3):
            s.step({0: None, 1: None, 2: None})            # one token each
        s.start(3)
        s.step({0: None, 1: None, 2: None, 3: prompt(rng, model.n_vocab, 12)})  # 3 joins
        s.leave(1)
        s.step({0: None, 2: None, 3: None})                # 1 left
        s.start(1)                                         # its slot reused by a new sequence
        s.step({0: None, 1: prompt(rng, model.n_vocab, 5), 3: None})  # 2 pauses this step
        s.truncate(3, 10)
        s.step({0: None, 1: None, 2: None, 3: [5, 6]})
        for _ in range(2):
            s.step({0: None, 1: None, 2: None, 3: None})
        return s.rows


def test_batched_equals_alone_shipped(engine_lib, shipped_gguf):
    assert run_schedule(shipped_gguf) == 40


def test_batched_equals_alone_tiny(engine_lib, tiny_default_gguf):
    assert run_schedule(tiny_default_gguf) == 40


def test_batches_split_by_n_batch(engine_lib, tiny_default_gguf):
    """Calls longer than n_batch run in chunks of n_batch tokens, whatever their sequences; the
    logits of every chunk are kept. Sequences stay under 192 tokens here: a sequence's tokens fall
    into other chunks than when it is decoded alone, and from 192 keys on, the attention sums are
    blocked by the key count at the end of each chunk (the results then differ in the last bits,
    as between two chunkings of one sequence)."""
    assert run_schedule(tiny_default_gguf, n_batch=16, long_prompt=150) == 40


def test_batched_equals_alone_f16_output(engine_lib, tiny_gguf):
    """The same with an F16 output matrix: the float matmuls sum each token's products in the same
    FMA chains whatever the number of tokens in its tile (src/kernels/x86/kernels_*.cpp), so an
    F16 logits row does not depend on how many tokens want logits in the same call."""
    assert run_schedule(tiny_gguf) == 40


def test_bad_batches_fail_and_change_nothing(engine_lib, tiny_default_gguf):
    from bitnet.bindings import BitnetError, Context, Model

    with Model(tiny_default_gguf) as model, Context(model, n_ctx=8, n_threads=1, n_seq_max=2) as ctx:
        ctx.decode_batch([1, 2, 3], [0, 0, 1], [0, 1, 0])
        bad = [
            (([4], [2], [0]), "sequence id 2 is out of range; this context has 2 sequence slot(s)"),
            (([4], [-1], [0]), "sequence id -1 is out of range"),
            (([4], [0], [3]), "position 3 for sequence 0, expected 2"),
            (([4, 5], [1, 1], [1, 1]), "position 1 for sequence 1, expected 2"),
            (([4, 5], [1, 0], [1, 1]), "position 1 for sequence 0, expected 2"),
            (([4], [0], [1]), "position 1 for sequence 0, expected 2"),
            (([4, model.n_vocab], [0, 1], [2, 1]), f"token id {model.n_vocab} is outside the vocabulary"),
            (([-1], [0], [2]), "token id -1 is outside the vocabulary"),
            (([1] * 7, [0] * 7, list(range(2, 9))), "the context is full for sequence 0"),
        ]
        for args, message in bad:
            with pytest.raises(BitnetError, match=message.replace("(", r"\(").replace(")", r"\)")):
                ctx.decode_batch(*args)
            assert (ctx.seq_length(0), ctx.seq_length(1)) == (2, 1), f"{args} changed the context"
        with pytest.raises(BitnetError, match="no tokens"):
            ctx.decode_batch([], [], [])
        with pytest.raises(ValueError, match="same length"):
            ctx.decode_batch([1, 2], [0], [2, 3])

        # Logits only for the flagged tokens of the last call.
        ctx.decode_batch([7, 8], [0, 1], [2, 1], [False, True])
        lib = ctx._lib
        assert lib.bitnet_get_logits_ith(ctx._p, 1)
        for i, message in [(0, "token 0 of the last batch did not ask for logits"),
                           (2, "index 2 is outside the last batch"), (-1, "index -1 is outside")]:
            assert not lib.bitnet_get_logits_ith(ctx._p, i)
            assert message in lib.bitnet_last_error().decode()

        with pytest.raises(BitnetError, match=r"sequence id 2 is out of range \(0..1\)"):
            ctx.seq_length(2)
        with pytest.raises(BitnetError, match="sequence id -3 is out of range"):
            ctx.seq_clear(-3)
        ctx.seq_truncate(1, 1)
        assert (ctx.seq_length(0), ctx.seq_length(1)) == (3, 1)
        ctx.seq_clear(0)
        assert (ctx.seq_length(0), ctx.seq_length(1), ctx.n_past) == (0, 1, 0)
        with pytest.raises(BitnetError, match="must not be negative"):
            Context(model, n_seq_max=-1)


def test_one_sequence_api_is_sequence_zero(engine_lib, tiny_default_gguf):
    """bitnet_decode, n_past and truncate act on sequence 0 and leave the others alone; n_seq_max 0
    means one slot."""
    from bitnet.bindings import Context, Model

    with Model(tiny_default_gguf) as model:
        with Context(model, n_ctx=32, n_threads=1, n_seq_max=0) as one:
            assert one.n_seq_max == 1
        with Context(model, n_ctx=32, n_threads=1, n_seq_max=3) as ctx:
            ctx.decode_batch([1, 2, 3, 4], [1, 1, 2, 1], [0, 1, 0, 2])
            first = ctx.decode([5, 6, 7], logits_all=True)
            assert (ctx.n_past, ctx.seq_length(0), ctx.seq_length(1), ctx.seq_length(2)) == (3, 3, 3, 1)
            ctx.truncate(1)
            assert (ctx.n_past, ctx.seq_length(1)) == (1, 3)
            ctx.truncate(0)
            assert np.array_equal(ctx.decode([5, 6, 7], logits_all=True), first)


def test_detokenize_matches_hugging_face(engine_lib, shipped_gguf):
    from tokenizers import Tokenizer

    from bitnet.bindings import BitnetError, Model

    hf = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    with Model(shipped_gguf) as model:
        for text in ["Hello world", "  two spaces, ünïcödé and emoji 🙂\n", "<|begin_of_text|>x<|eot_id|>"]:
            ids = hf.encode(text, add_special_tokens=False).ids
            assert model.detokenize(ids) == hf.decode(ids, skip_special_tokens=False)
        long = list(range(model.n_vocab))
        assert model.detokenize(long) == hf.decode(long, skip_special_tokens=False)
        assert model.detokenize([]) == ""
        with pytest.raises(BitnetError):
            model.detokenize([model.n_vocab])


def test_detokenize_for_display_leaves_control_tokens_out(engine_lib, shipped_gguf):
    from tokenizers import Tokenizer

    from bitnet.bindings import BitnetError, Model

    hf = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    with Model(shipped_gguf) as model:
        ids = hf.encode("<|begin_of_text|>Hello<|end_of_text|> world", add_special_tokens=False).ids
        assert model.detokenize(ids, special=False) == hf.decode(ids, skip_special_tokens=True) == "Hello world"
        assert model.detokenize(ids) == "<|begin_of_text|>Hello<|end_of_text|> world"
        long = list(range(model.n_vocab))
        assert model.detokenize(long, special=False) == hf.decode(long, skip_special_tokens=True)
        assert model.is_control(model.bos) and not model.is_control(ids[1])
        with pytest.raises(BitnetError):
            model.detokenize([model.n_vocab], special=False)
