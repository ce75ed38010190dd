"""The C++ SentencePiece (Llama-2 style) tokenizer against Hugging Face `tokenizers` and the
`sentencepiece` package, on vocabularies trained here by bitnet.convert.vocab.build_spm_tokenizer.

The C++ side is tests/cpp/tokenize_driver.cpp (the real bitnet::Tokenizer, model "llama") fed a
plain-text dump of tokenizer.model; ids and decoded text must equal what `tokenizers` gives for
the builder's tokenizer.json, and what `sentencepiece` gives for tokenizer.model, on the corpus of
tests/test_tokenizer.py plus SentencePiece edge cases. The converter's export (bitnet.convert.vocab.
add_tokenizer, from tokenizer.model or from tokenizer.json alone) is checked through a converted
tiny checkpoint and the engine's C API.
"""

from __future__ import annotations

import codecs
import json
import random
import shutil
import subprocess
from pathlib import Path

import click
import pytest

spm = pytest.importorskip("sentencepiece")
from sentencepiece import sentencepiece_model_pb2  # noqa: E402
from test_tokenizer import CORPUS, driver, first_mismatches, pydoc_text, run_driver  # noqa: E402,F401
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers  # noqa: E402

from bitnet.convert.vocab import SPACE, add_tokenizer, build_spm_tokenizer  # noqa: E402

USER_DEFINED = "<tool>"  # a non-special added token, appended after the trained vocabulary
EXTRA = [  # SentencePiece edge cases: spaces and "▁", added tokens, unknowns
    " ", "  ", "   x", "x   ", "a  b", " \n ", SPACE, f"{SPACE}x", f"a{SPACE}{SPACE}b", f" {SPACE} ",
    "<s>", "</s>", "<unk>", "<s>Hello</s>", " <s> x", "<s> ", "a<unk>b", "<s><s>", "</s>x</s>",
    "<0x41>", "<0x0A>\n", "<s", "s>", f"x{USER_DEFINED}y", f"{USER_DEFINED} {USER_DEFINED}", "<tool",
    "\ue000", "a\ue000\ue000b", "中文 日本語 😀", "1234567890", "x" * 3000, "ab " * 2000,
]
TEXTS = CORPUS + EXTRA


def is_added_text(t: str) -> bool:
    return any(s in t for s in ("<s>", "</s>", "<unk>", USER_DEFINED))


# ---- vocabularies ---------------------------------------------------------------------------------


def dump_spm(model_file: Path, path: Path, *, scheme: str = "sentencepiece", prefix: bool = True,
             drop: str | None = None, scores: bool = True) -> Path:
    """The driver's vocabulary format (see tests/cpp/tokenize_driver.cpp) for a tokenizer.model,
    plus USER_DEFINED as a user-defined token."""
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    lines = ["model llama", "bos 1", "eos 2", "unk 0", "add_bos 1", f"add_space_prefix {int(prefix)}",
             f"prepend_scheme {scheme}"]
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces] + [(USER_DEFINED, 0.0, 4)]
    for text, score, ttype in pieces:
        if text == drop:
            continue
        lines += [f"token {text.encode().hex()}", f"type {ttype}"] + ([f"score {score!r}"] if scores else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def hf_tokenizer(d: Path, scheme: str = "sentencepiece", prefix: bool = True) -> Tokenizer:
    """The builder's tokenizer.json, with USER_DEFINED added, rewritten to a prepend scheme:
    "sentencepiece" is the legacy normalizer as written; the Metaspace ones are what newer
    transformers versions write (no normalizer, a Metaspace pre-tokenizer)."""
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.add_tokens([AddedToken(USER_DEFINED, special=False, normalized=False)])
    if scheme != "sentencepiece":
        tok.normalizer = normalizers.Sequence([])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SPACE, prepend_scheme=scheme.split("-")[1] if prefix else "never", split=False)
    elif not prefix:
        tok.normalizer = normalizers.Replace(" ", SPACE)
    if not prefix:
        tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok


@pytest.fixture(scope="session", params=[1000, 6000])
def vocab(request, tmp_path_factory):
    """(trained dir, HF tokenizer, sentencepiece processor, driver dump) per vocabulary size."""
    d = tmp_path_factory.mktemp(f"spm{request.param}")
    build_spm_tokenizer(d, request.param)
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    assert sp.piece_to_id("\ue000") == sp.unk_id()  # the invalid-UTF-8 test relies on it
    return d, hf_tokenizer(d), sp, dump_spm(d / "tokenizer.model", d / "vocab.txt")


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory) -> Path:
    """A 1000-token vocabulary for the tests that need only one."""
    d = tmp_path_factory.mktemp("spm-small")
    build_spm_tokenizer(d, 1000)
    return d


def encode(driver, vocab_file, tmp, texts, *flags) -> list[list[int]]:
    out = run_driver(driver, vocab_file, "encode", [t.encode().hex() for t in texts], *flags, tmp=tmp)
    assert len(out) == len(texts)
    return [[int(x) for x in line.split()] for line in out]


# ---- encode and decode ----------------------------------------------------------------------------


def test_builder_writes_a_llama2_style_tokenizer(vocab):
    d, hf, sp, _ = vocab
    assert sp.get_piece_size() == hf.get_vocab_size() - 1  # all trained: no <reserved_N>
    assert [sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<0x00>"]
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert (cfg["bos_token"], cfg["eos_token"], cfg["add_bos_token"]) == ("<s>", "</s>", True)
    assert hf.encode("Hi").ids == [1] + sp.encode("Hi")  # the post-processor adds BOS


def test_encode_matches_hf_and_sentencepiece(driver, vocab, tmp_path):
    _, hf, sp, dump = vocab
    got = encode(driver, dump, tmp_path, TEXTS)
    want = [e.ids for e in hf.encode_batch(TEXTS, add_special_tokens=False)]
    assert got == want, first_mismatches(TEXTS, got, want)
    plain = [(t, g) for t, g in zip(TEXTS, got) if not is_added_text(t)]
    want_sp = sp.encode([t for t, _ in plain])
    assert [g for _, g in plain] == want_sp, first_mismatches([t for t, _ in plain], [g for _, g in plain], want_sp)


def test_special_tokens_as_text_match_hf_and_sentencepiece(driver, vocab, tmp_path):
    _, hf, sp, dump = vocab
    texts = [t for t in TEXTS if is_added_text(t) or "<" in t]
    got = encode(driver, dump, tmp_path, texts, "--no-special")
    hf.encode_special_tokens = True
    try:
        want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    finally:
        hf.encode_special_tokens = False
    assert got == want, first_mismatches(texts, got, want)
    no_user = [(t, g) for t, g in zip(texts, got) if USER_DEFINED not in t]  # sentencepiece lacks it
    assert [g for _, g in no_user] == sp.encode([t for t, _ in no_user])
    assert not any({0, 1, 2} & set(ids) for ids in got)


def test_add_bos(driver, vocab, tmp_path):
    _, hf, _, dump = vocab
    texts = ["Hello", "", "<s>", " x"]
    assert encode(driver, dump, tmp_path, texts, "--bos") == [hf.encode(t).ids for t in texts]


def test_decode_matches_hf_and_sentencepiece(driver, vocab, tmp_path):
    _, hf, sp, dump = vocab
    ids = [e.ids for e in hf.encode_batch(TEXTS, add_special_tokens=False)]
    rng = random.Random(5)
    n = hf.get_vocab_size()
    no_bytes = [i for i in range(n) if not (3 <= i < 259)]  # random byte runs are rarely UTF-8
    ids += [[rng.choice(no_bytes) for _ in range(rng.randint(1, 12))] for _ in range(400)]
    ids += [[1] + x for x in ids[:50]]  # after BOS
    out = run_driver(driver, dump, "decode", [" ".join(map(str, x)) for x in ids], tmp=tmp_path)
    got = [bytes.fromhex(h).decode("utf-8") for h in out]
    want = hf.decode_batch(ids, skip_special_tokens=False)
    assert got == want, first_mismatches([str(x) for x in ids], got, want)
    plain = [i for i, t in enumerate(TEXTS) if not is_added_text(t)]
    assert [got[i] for i in plain] == sp.decode([ids[i] for i in plain])
    assert all(got[i] == TEXTS[i] for i in plain if SPACE not in TEXTS[i])  # "▁" decodes as " "


BAD_BYTES: list[int] = []  # the ill-formed bytes the "spm_pua" error handler replaced, in order


def spm_pua(err: UnicodeDecodeError):
    BAD_BYTES.append(err.object[err.start])
    return "\ue000", err.start + 1


codecs.register_error("spm_pua", spm_pua)


def test_invalid_utf8_becomes_byte_tokens(driver, vocab, tmp_path):
    """Each ill-formed byte is a character of its own that no piece covers, so it comes out as its
    <0xXX> token and decode gives the input back. Oracle: HF on the text with every such byte
    replaced by U+E000 (also in no piece, hence merged with nothing), whose three byte tokens
    then stand for the one byte."""
    _, hf, _, dump = vocab
    rng = random.Random(3)
    pool = [b"a", b" ", b"  ", b"\n", b"the", b"\x80", b"\xbf", b"\xc3", b"\xe2\x96", b"\xf0\x9f", b"\xff",
            "é".encode(), "😀".encode(), b"s>"]
    samples = [b"\xff", b" \xc3", b"a\xc3b", b"\xe2\x96", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
    samples += [b"".join(rng.choice(pool) for _ in range(rng.randint(1, 16))) for _ in range(300)]
    got = run_driver(driver, dump, "encode", [s.hex() for s in samples], tmp=tmp_path)
    decoded = run_driver(driver, dump, "decode", got, tmp=tmp_path)
    assert [bytes.fromhex(h) for h in decoded] == samples
    pua = hf.encode("\ue000", add_special_tokens=False).ids[1:]  # after the prefix "▁"
    assert len(pua) == 3
    for raw, line in zip(samples, got, strict=True):
        BAD_BYTES.clear()
        want = hf.encode(raw.decode("utf-8", "spm_pua"), add_special_tokens=False).ids
        bad = iter(BAD_BYTES)
        expected, i = [], 0
        while i < len(want):
            if want[i:i + 3] == pua:
                expected.append(3 + next(bad))  # <0xXX> is id 3 + XX
                i += 3
            else:
                expected.append(want[i])
                i += 1
        assert [int(x) for x in line.split()] == expected, raw


@pytest.mark.parametrize("scheme, prefix", [("sentencepiece", False), ("metaspace-always", True),
                                            ("metaspace-first", True)])
def test_prepend_schemes_match_hf(driver, small_dir, tmp_path, scheme, prefix):
    hf = hf_tokenizer(small_dir, scheme, prefix)
    dump = dump_spm(small_dir / "tokenizer.model", tmp_path / "vocab.txt", scheme=scheme, prefix=prefix)
    texts = CORPUS[:300] + EXTRA
    got = encode(driver, dump, tmp_path, texts)
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert got == want, first_mismatches(texts, got, want)
    out = run_driver(driver, dump, "decode", [" ".join(map(str, x)) for x in want], tmp=tmp_path)
    got_text = [bytes.fromhex(h).decode() for h in out]
    want_text = hf.decode_batch(want, skip_special_tokens=False)
    assert got_text == want_text, first_mismatches(texts, got_text, want_text)


def test_info_and_end_of_generation(driver, vocab):
    _, hf, _, dump = vocab
    info = dict(line.split(" ", 1) for line in run_driver(driver, dump, "info", None))
    assert (int(info["n_vocab"]), info["bos"], info["eos"], info["eog"]) == (hf.get_vocab_size(), "1", "2", "2")


@pytest.mark.parametrize("case, message", [
    ({"scores": False}, "0 scores for"),
    ({"drop": "<0x41>"}, "has 255 of the 256 byte tokens"),
    ({"scheme": "first"}, "prepend scheme 'first' is not supported"),
])
def test_inconsistent_vocabulary_is_a_clear_error(driver, small_dir, tmp_path, case, message):
    path = dump_spm(small_dir / "tokenizer.model", tmp_path / "vocab.txt", **case)
    res = subprocess.run([str(driver), str(path), "info"], capture_output=True, text=True)
    assert res.returncode == 1 and message in res.stderr, res.stderr


# ---- the converter and the engine -----------------------------------------------------------------


def write_tokenizer_gguf(model_dir: Path, out: Path, n_vocab: int):
    from gguf import GGUFWriter

    from bitnet.formats.gguf_reader import read_gguf

    w = GGUFWriter(str(out), "llama")
    add_tokenizer(w, model_dir, n_vocab)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return read_gguf(out).metadata


@pytest.fixture(scope="module")
def spm_checkpoint(tiny_packed, tmp_path_factory) -> Path:
    """The tiny checkpoint (vocab_size 1000) with a 1bitLLM-like tokenizer instead of its own: a
    SentencePiece model of 990 tokens, then added tokens in tokenizer.json (a special <pad>, as
    1bitLLM's, and a user-defined one), then 8 embedding rows past the tokenizer."""
    d = tmp_path_factory.mktemp("spmckpt") / "ckpt"
    shutil.copytree(tiny_packed, d, ignore=shutil.ignore_patterns("*.gguf", "tokenizer*"))
    build_spm_tokenizer(d, 990, corpus=pydoc_text()[:8])
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.add_special_tokens([AddedToken("<pad>", special=True, normalized=False)])
    tok.add_tokens([AddedToken(USER_DEFINED, special=False, normalized=False)])
    tok.save(str(d / "tokenizer.json"))
    return d


def test_builder_pads_a_short_training_with_reserved_tokens(tmp_path):
    build_spm_tokenizer(tmp_path, 400, corpus=["a tiny corpus, far too small for 400 pieces"])
    n_sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model")).get_piece_size()
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert n_sp < 400 and hf.get_vocab_size() == 400
    assert hf.id_to_token(n_sp) == "<reserved_0>" and hf.encode("<reserved_0>").ids == [1, n_sp]


def test_converter_writes_llama_cpp_keys(spm_checkpoint, tmp_path):
    md = write_tokenizer_gguf(spm_checkpoint, tmp_path / "t.gguf", 1000)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((spm_checkpoint / "tokenizer.model").read_bytes())
    n_sp = len(proto.pieces)
    assert n_sp == 990
    tokens, types, scores = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"], md["tokenizer.ggml.scores"]
    assert md["tokenizer.ggml.model"] == "llama" and len(tokens) == len(types) == len(scores) == 1000
    assert tokens[:n_sp] == [p.piece for p in proto.pieces]
    assert types[:n_sp] == [p.type for p in proto.pieces] and types[3] == 6 and types[1] == 3
    assert scores[:n_sp] == pytest.approx([p.score for p in proto.pieces])
    assert tokens[990:992] == ["<pad>", USER_DEFINED] and types[990:992] == [3, 4]
    assert tokens[992:] == [f"[PAD{i}]" for i in range(992, 1000)] and types[992:] == [5] * 8
    assert (md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"],
            md["tokenizer.ggml.unknown_token_id"]) == (1, 2, 0)
    assert md["tokenizer.ggml.add_bos_token"] is True and md["tokenizer.ggml.add_eos_token"] is False
    assert md["tokenizer.ggml.add_space_prefix"] is True
    assert "[INST]" in md["tokenizer.chat_template"]


@pytest.mark.parametrize("source", ["tokenizer.model", "tokenizer.json"])
def test_engine_api_tokenizes_converted_model_like_hf(engine_lib, spm_checkpoint, tmp_path, source):
    """The whole path: converted (from tokenizer.model, or from tokenizer.json alone), loaded by
    the engine, used through the C API, against `tokenizers` on tokenizer.json."""
    from conftest import convert_to

    from bitnet.bindings import Model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(spm_checkpoint, ckpt)
    if source == "tokenizer.json":
        (ckpt / "tokenizer.model").unlink()
    hf = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    texts = CORPUS[:400] + EXTRA + ["<pad>x<pad> <pad>"]
    with Model(convert_to(ckpt, "i2_s")) as m:
        for text in texts:
            want = hf.encode(text, add_special_tokens=False).ids
            assert m.tokenize(text, add_bos=False) == want, f"{text!r}"
            assert m.detokenize(want) == hf.decode(want, skip_special_tokens=False), f"{text!r}"
        assert m.tokenize("Hi", add_bos=True) == hf.encode("Hi").ids


def test_tokenizer_json_only_gives_same_vocabulary(spm_checkpoint, tmp_path):
    """Without tokenizer.model, scores come from the merge ranks: same tokens and types, and the
    same score order for the tokens that merges make."""
    full = write_tokenizer_gguf(spm_checkpoint, tmp_path / "a.gguf", 1000)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(spm_checkpoint, ckpt)
    (ckpt / "tokenizer.model").unlink()
    only_json = write_tokenizer_gguf(ckpt, tmp_path / "b.gguf", 1000)
    for key in ("tokens", "token_type", "bos_token_id", "eos_token_id", "unknown_token_id", "add_space_prefix"):
        assert only_json[f"tokenizer.ggml.{key}"] == full[f"tokenizer.ggml.{key}"], key
    tokens, types = full["tokenizer.ggml.tokens"], full["tokenizer.ggml.token_type"]
    merged = [i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1 and len(t) > 1]
    assert len(merged) > 500
    by_score = [sorted(merged, key=lambda i: -md["tokenizer.ggml.scores"][i]) for md in (full, only_json)]
    assert by_score[0] == by_score[1]


@pytest.mark.parametrize("scheme", ["first", "always", "never"])
def test_converter_reads_metaspace_tokenizer_json(spm_checkpoint, tmp_path, scheme):
    """A tokenizer.json as newer transformers write it (Metaspace pre-tokenizer, no normalizer)
    keeps its prefix rule in the GGUF; the engine follows it (test_prepend_schemes_match_hf)."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(spm_checkpoint, ckpt, ignore=shutil.ignore_patterns("tokenizer.model"))
    tj = json.loads((ckpt / "tokenizer.json").read_text())
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": scheme, "split": False}
    (ckpt / "tokenizer.json").write_text(json.dumps(tj))
    md = write_tokenizer_gguf(ckpt, tmp_path / "m.gguf", 1000)
    assert md["tokenizer.ggml.add_space_prefix"] is (scheme != "never")
    assert md.get("tokenizer.ggml.prepend_scheme") == {"first": "metaspace-first", "always": "metaspace-always",
                                                       "never": None}[scheme]
    tj["pre_tokenizer"]["split"] = True
    (ckpt / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(click.ClickException, match="only Llama-2's rules"):
        write_tokenizer_gguf(ckpt, tmp_path / "n.gguf", 1000)


def test_bad_tokenizer_files_are_clear_errors(tmp_path):
    from gguf import GGUFWriter

    def export(d: Path, n_vocab: int = 1000):
        w = GGUFWriter(str(tmp_path / "x.gguf"), "llama")
        with pytest.raises(click.ClickException) as e:
            add_tokenizer(w, d, n_vocab)
        return e.value.message

    d = tmp_path / "ckpt"
    d.mkdir()
    assert "neither tokenizer.json nor tokenizer.model" in export(d)
    (d / "tokenizer.model").write_bytes(b"\x00not a sentencepiece model at all" * 10)
    assert "is not a SentencePiece model" in export(d)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(pydoc_text()[:20]), model_prefix=str(d / "uni"),
                                   vocab_size=300, model_type="unigram", minloglevel=2, num_threads=1)
    shutil.copy(d / "uni.model", d / "tokenizer.model")
    assert "only BPE models" in export(d)
    build_spm_tokenizer(d, 1000)
    assert "does not belong to this checkpoint" in export(d, n_vocab=500)
