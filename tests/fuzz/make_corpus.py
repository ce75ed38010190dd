"""Write the seed corpus of the libFuzzer harnesses (tests/fuzz/corpus/<harness>/) from the
project's own generators, so that no seed is an opaque blob: run it again and the same bytes come
out (every generator is seeded).

  model/      tiny GGUF models of every type and layout the engine reads: I2_S, TL1, TL2, TQ1_0,
              TQ2_0 ternary tensors; F16, F32, Q8_0, Q6_K, Q4_0 embeddings; the bitnet-b1.58,
              bitnet and llama architectures; the Llama-3 byte-level BPE, Falcon and SentencePiece
              vocabularies; the alignment-1 file; then every bad file of tests/gguf_craft.py
              (corrupt_cases on a smaller base model, the refused hyperparameters and special
              token ids of tests/test_bad_input.py, the aliased tensor table). fuzz_tokenizer
              uses the models that load as its vocabularies.
  tokenizer/  texts of tests/test_tokenizer.py's corpus (many scripts, emoji, whitespace, invalid
              UTF-8) with the selector byte fuzz_tokenizer.cpp reads first.
  sampler/    parameter blocks of fuzz_sampler.cpp with finite, NaN and infinite logits.
  chat/       the chat templates of the dummy checkpoints and the family names, with messages.

Inputs that once crashed a harness are kept beside the generated seeds as regress-* files (this
script leaves them alone): each is a regression test that the CI fuzzing pass runs first.

    python tests/fuzz/make_corpus.py [--out tests/fuzz/corpus]
"""

from __future__ import annotations

import math
import shutil
import struct
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import click

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

import gguf_craft as gc  # noqa: E402

GENERATED_PREFIX = "gen-"
# Small shapes: every matrix dimension a multiple of 128 (I2_S, TL) or 256 (TQ, Q6_K) where its
# type needs it, one layer, the smallest vocabulary the dummy generator makes.
SMALL = dict(hidden=128, layers=1, heads=2, kv_heads=1, ffn=128, vocab=512, ctx=64)
SMALL_256 = dict(SMALL, hidden=256, ffn=256, heads=4)


@contextmanager
def craft_base(n_embd: int):
    """gguf_craft's minimal model and its corrupt cases with n_embd = n_ff = `n_embd`: the same
    cases, ten times smaller files."""
    saved = gc.N_EMBD, gc.N_FF, gc.HEAD_DIM
    gc.N_EMBD, gc.N_FF, gc.HEAD_DIM = n_embd, n_embd, n_embd // gc.N_HEAD
    try:
        yield
    finally:
        gc.N_EMBD, gc.N_FF, gc.HEAD_DIM = saved


def model_seeds(work: Path) -> dict[str, bytes]:
    import gguf

    from test_falcon_vocab import train_falcon, write_checkpoint_tokenizer
    from test_foreign_gguf import llama_cpp_tq, rewrite
    from bitnet.convert.hf import convert
    from utils.generate_dummy_model import generate

    def conv(ckpt: Path, name: str, outtype: str = "i2_s", embd_type: str = "q4_0") -> Path:
        return convert(ckpt, work / f"{name}.gguf", outtype=outtype, embd_type=embd_type)

    b158 = generate(work / "b158", preset="tiny", seed=7, **SMALL)
    b158_256 = generate(work / "b158-256", preset="tiny", seed=7, **SMALL_256)
    spm = generate(work / "bitnet", preset="bitnet-tiny", seed=7, **SMALL)
    llama = generate(work / "llama", preset="llama-tiny", seed=7, **dict(SMALL, head_dim=64))
    falcon = generate(work / "falcon", preset="llama-tiny", seed=7, **dict(SMALL, head_dim=64, vocab=1536))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (falcon / f).unlink()
    write_checkpoint_tokenizer(train_falcon(ignore_merges=True, keep_merges=1.0), falcon)

    files = [conv(b158, "b158-i2_s-q4_0"), conv(b158, "b158-i2_s-f16", embd_type="f16"),
             conv(b158, "b158-i2_s-f32", embd_type="f32"), conv(b158, "b158-i2_s-q8_0", embd_type="q8_0"),
             conv(b158, "b158-tl1-q4_0", "tl1"), conv(b158, "b158-tl2-q4_0", "tl2"),
             conv(b158_256, "b158-i2_s-q6_k", embd_type="q6_k"),
             conv(spm, "bitnet-spm-i2_s-q4_0"), conv(llama, "llama-i2_s-q4_0"),
             conv(falcon, "llama-falcon-vocab-i2_s-q4_0")]
    ref = conv(b158_256, "b158-256-i2_s-q8_0", embd_type="q8_0")
    for qtype, scales in [(gguf.GGMLQuantizationType.TQ1_0, True), (gguf.GGMLQuantizationType.TQ2_0, False)]:
        name = f"bitnet-{qtype.name.lower()}{'-scales' if scales else ''}-q8_0.gguf"
        files.append(rewrite(ref, work / name, "bitnet", llama_cpp_tq(qtype, scales)))
    seeds = {p.name: p.read_bytes() for p in files}

    with craft_base(16):
        seeds["craft-minimal.gguf"] = gc.minimal_model().data
        seeds["craft-alignment-1.gguf"] = gc.minimal_model_unaligned().data
        seeds["craft-unknown-arch.gguf"] = gc.minimal_model(arch="foo").data
        seeds["craft-missing-tensor.gguf"] = gc.minimal_model(drop_tensor="blk.0.ffn_up.weight").data
        for name, (data, _) in gc.corrupt_cases().items():
            seeds[f"craft-{name}.gguf"] = data
        bad_kvs = [("attention.layer_norm_rms_epsilon", gc.F32, math.nan),
                   ("rope.freq_base", gc.F32, 0.0), ("rope.freq_base", gc.F64, 1e300)]
        for i, (key, vtype, value) in enumerate(bad_kvs):
            seeds[f"craft-bad-hparam-{i}.gguf"] = gc.model_with_kv(f"{gc.ARCH}.{key}", vtype, value).data
        seeds["craft-bos-beyond-32-bits.gguf"] = gc.model_with_kv(
            "tokenizer.ggml.bos_token_id", gc.U64, 2**32 + 5).data
    seeds["craft-deep-2.gguf"] = gc.deep_model(2).data
    seeds["craft-aliased-64.gguf"] = gc.deep_model(64, alias=True).data
    return seeds


def tokenizer_seeds() -> dict[str, bytes]:
    from test_tokenizer import CORPUS

    # Every 20th text of the 1,200 (each script and kind of whitespace is there many times).
    texts = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else t for t in CORPUS[::20]]
    texts += [b"\xff\xfe bad \xc3 utf-8 \xed\xa0\x80", "<|begin_of_text|>hi<|eot_id|>".encode(),
              "<s> [INST] hi [/INST]".encode(), b"\x00\x01\x02 ctrl"]
    seeds = {}
    for i, t in enumerate(t for t in texts if len(t) <= 400):
        # The selector byte: model i (mod the models that load), BOS and special-token parsing
        # on every other seed.
        seeds[f"text-{i:03d}"] = bytes([(i % 64) | (0xC0 if i % 2 else 0)]) + t
    return seeds


def sampler_seeds() -> dict[str, bytes]:
    def block(temp, top_k, top_p, min_p, penalty, last_n, seed, history, logits):
        head = struct.pack("<fifffiQB", temp, top_k, top_p, min_p, penalty, last_n, seed, len(history))
        return head + struct.pack(f"<{len(history)}i", *history) + struct.pack(f"<{len(logits)}f", *logits)

    inf, nan = math.inf, math.nan
    logits = [0.5, -1.0, 3.0, 2.0, 0.0, -0.0, 1e30, -1e30]
    return {
        "greedy": block(0.0, 40, 0.95, 0.05, 1.0, 64, 1, [], logits),
        "default": block(0.8, 40, 0.95, 0.05, 1.0, 64, 1, [2, 3], logits),
        "penalty": block(0.8, 0, 1.0, 0.0, 1.3, 8, 2, [0, 2, 4, 6, -1, 99], logits),
        "nan": block(0.7, 3, 0.9, 0.1, 1.1, 4, 3, [1], [nan, 1.0, nan, 2.0]),
        "inf": block(1.0, 0, 0.5, 0.0, 1.0, 4, 4, [], [inf, 1.0, -inf, inf]),
        "all-neg-inf": block(1.0, 2, 0.9, 0.05, 1.0, 0, 5, [], [-inf] * 5),
        "huge-temp": block(1e38, 100, 2.0, -1.0, 1.0, 1, 6, [], logits),
        "tiny-temp": block(1e-38, 1, 0.0, 1.0, 1.0, 1, 7, [], logits),
    }


def chat_seeds(work: Path) -> dict[str, bytes]:
    import json

    templates = [json.loads((d / "tokenizer_config.json").read_text())["chat_template"]
                 for d in sorted(work.iterdir()) if (d / "tokenizer_config.json").is_file()]
    names = ["bitnet", "llama3", "falcon3", "chatml", "nope"]
    msgs = [b"system", b"You are\t helpful. \xe3\x80\x80", b"user", b" hi \xc2\xa0", b"assistant",
            b"hello<|eot_id|>", b"tool", b""]
    seeds = {}
    for i, choice in enumerate([t.encode() for t in templates] + [n.encode() for n in names]):
        seeds[f"chat-{i:02d}"] = b"\0".join([choice, b"<s>", b"</s>", *msgs[: 2 + 2 * (i % 4)]])
    return seeds


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path(__file__).resolve().parent / "corpus", show_default=True)
def main(out: Path) -> None:
    """Regenerate the fuzzing seed corpus (regress-* files are kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpora = {"model": model_seeds(work), "tokenizer": tokenizer_seeds(),
                   "sampler": sampler_seeds(), "chat": chat_seeds(work)}
        for harness, seeds in corpora.items():
            d = out / harness
            d.mkdir(parents=True, exist_ok=True)
            for old in d.glob(GENERATED_PREFIX + "*"):
                old.unlink()
            for name, data in seeds.items():
                (d / (GENERATED_PREFIX + name)).write_bytes(data)
            total = sum(len(b) for b in seeds.values())
            click.echo(f"{d}: {len(seeds)} seeds, {total / 1e6:.2f} MB")
    shutil.rmtree(out / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
