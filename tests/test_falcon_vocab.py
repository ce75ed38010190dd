"""Falcon3 / Falcon-E style byte-level vocabularies through the converter and the engine.

The tokenizer.json of these checkpoints is byte-level BPE with Llama 3's pre-tokenizer rules (llama.cpp
runs its "falcon3" and the BitNet fork's "falcon_e" with the Llama-3 regex), no normalizer, a ByteLevel
decoder and post-processor, and Falcon's added tokens: ">>TITLE<<"... from id 0, "<|endoftext|>" at
id 11 as eos, a "<|pad|>", no BOS. A small vocabulary with that JSON layout is trained here with
`tokenizers` on the corpus of tests/test_tokenizer.py, written into a GGUF by bitnet.convert.vocab.add_tokenizer,
and the GGUF's tokenizer.* keys are fed to the tokenize driver (the real bitnet::Tokenizer): ids and
decoded text must equal Hugging Face's, with and without the model's ignore_merges flag (which picks
the GGUF pre-tokenizer name). A non-special added token written in the byte-level alphabet (as
Falcon's tokenizers carry for tab and newline runs) checks that such tokens match their literal text
and decode through the byte table, as in `tokenizers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

tokenizers = pytest.importorskip("tokenizers")
from test_tokenizer import CORPUS, LLAMA3_REGEX, driver, first_mismatches, pydoc_text, run_driver  # noqa: E402,F401
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

from bitnet.convert.vocab import add_tokenizer  # noqa: E402

FALCON_SPECIAL = [">>TITLE<<", ">>ABSTRACT<<", ">>INTRODUCTION<<", ">>SUMMARY<<", ">>COMMENT<<", ">>ANSWER<<",
                  ">>QUESTION<<", ">>DOMAIN<<", ">>EMAIL_ADDRESS<<", ">>IP_ADDRESS<<", "<|startoftext|>",
                  "<|endoftext|>"]
EOS = 11
BYTE_LEVEL_ADDED = "ĉĉĉ"  # three tabs in the byte-level alphabet, a non-special added token
N_VOCAB = 1536  # embedding rows: the tokenizer's 1,500 tokens, then padding


def train_falcon(ignore_merges: bool, keep_merges: float) -> Tokenizer:
    """A Falcon3-layout tokenizer: Falcon's special tokens first, BPE trained on pydoc topics,
    then "<|pad|>" and BYTE_LEVEL_ADDED. keep_merges < 1 drops the last merges so that
    ignore_merges changes ids."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=1498, special_tokens=FALCON_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(pydoc_text(), trainer)
    tok.add_special_tokens([AddedToken("<|pad|>", special=True, normalized=False)])
    tok.add_tokens([AddedToken(BYTE_LEVEL_ADDED, special=False, normalized=False)])
    spec = json.loads(tok.to_str())
    merges = spec["model"]["merges"]
    spec["model"]["merges"] = merges[: int(len(merges) * keep_merges)]
    tok = Tokenizer.from_str(json.dumps(spec))
    assert tok.token_to_id("<|endoftext|>") == EOS and tok.get_vocab_size() <= N_VOCAB
    return tok


def write_checkpoint_tokenizer(tok: Tokenizer, d: Path) -> Path:
    """tokenizer.json plus a Falcon3-like tokenizer_config.json (eos, pad, no BOS) in d."""
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    cfg = {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "model_max_length": 8192,
           "chat_template": "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '\\n' }}"
                            "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
           "tokenizer_class": "PreTrainedTokenizerFast"}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def convert(model_dir: Path, out: Path) -> dict:
    from gguf import GGUFWriter

    from bitnet.formats.gguf_reader import read_gguf

    w = GGUFWriter(str(out), "llama")
    add_tokenizer(w, model_dir, N_VOCAB)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return read_gguf(out).metadata


def dump_gguf_vocab(md: dict, path: Path) -> Path:
    """The tokenizer.* keys of a GGUF in the driver's vocabulary format."""
    lines = [f"model {md['tokenizer.ggml.model']}", f"pre {md['tokenizer.ggml.pre']}",
             f"eos {md['tokenizer.ggml.eos_token_id']}", f"pad {md['tokenizer.ggml.padding_token_id']}",
             f"add_bos {int(md['tokenizer.ggml.add_bos_token'])}"]
    for text, ttype in zip(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"], strict=True):
        lines += [f"token {text.encode('utf-8').hex()}", f"type {ttype}"]
    lines += [f"merge {m.encode('utf-8').hex()}" for m in md["tokenizer.ggml.merges"]]
    path.write_text("\n".join(lines) + "\n")
    return path


# (ignore_merges, fraction of merges kept, tokenizer.ggml.pre)
VARIANTS = {"falcon-ignore-merges": (True, 0.6, "llama-bpe"), "falcon-all-merges": (False, 1.0, "smaug-bpe")}


@pytest.fixture(scope="module", params=list(VARIANTS))
def falcon(request, tmp_path_factory):
    """(HF tokenizer, GGUF metadata, driver vocabulary path, expected pre name)."""
    ignore_merges, keep, pre = VARIANTS[request.param]
    d = tmp_path_factory.mktemp(request.param)
    tok = train_falcon(ignore_merges, keep)
    md = convert(write_checkpoint_tokenizer(tok, d / "ckpt"), d / "vocab.gguf")
    return tok, md, dump_gguf_vocab(md, d / "vocab.txt"), pre


def texts() -> list[str]:
    return CORPUS + [f"a{BYTE_LEVEL_ADDED}b", "\t\t\t", f"<|endoftext|>{BYTE_LEVEL_ADDED}>>TITLE<<x",
                     "<|pad|><|startoftext|>", ">>TITLE", "12345678 1,234.5"]


def test_converter_writes_falcon_keys(falcon):
    tok, md, _, pre = falcon
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == pre
    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    assert len(tokens) == N_VOCAB and tokens[:12] == FALCON_SPECIAL
    added = {tok.token_to_id(t): t for t in FALCON_SPECIAL + ["<|pad|>", BYTE_LEVEL_ADDED]}
    assert all(types[i] == (4 if t == BYTE_LEVEL_ADDED else 3) for i, t in added.items())
    assert types[-1] == 5 and tokens[-1] == f"[PAD{N_VOCAB - 1}]"
    assert md["tokenizer.ggml.eos_token_id"] == EOS and "tokenizer.ggml.bos_token_id" not in md
    assert md["tokenizer.ggml.padding_token_id"] == tok.token_to_id("<|pad|>")
    assert md["tokenizer.ggml.add_bos_token"] is False
    assert md["tokenizer.chat_template"].startswith("{% for m in messages %}")


def test_engine_encodes_like_hf(driver, falcon, tmp_path):
    tok, _, path, _ = falcon
    corpus = texts()
    want = [e.ids for e in tok.encode_batch(corpus, add_special_tokens=True)]  # no BOS is added
    got = [[int(x) for x in line.split()]
           for line in run_driver(driver, path, "encode", [t.encode("utf-8").hex() for t in corpus], tmp=tmp_path)]
    assert got == want, first_mismatches(corpus, got, want)
    assert [tok.token_to_id(BYTE_LEVEL_ADDED)] == got[len(CORPUS)][1:-1]


def test_engine_decodes_like_hf(driver, falcon, tmp_path):
    tok, _, path, _ = falcon
    ids = [e.ids for e in tok.encode_batch(texts(), add_special_tokens=False)]
    n = tok.get_vocab_size(with_added_tokens=True)
    ids += [list(range(i, min(i + 7, n))) for i in range(0, n, 7)]  # every token, specials included
    out = run_driver(driver, path, "decode", [" ".join(map(str, x)) for x in ids], tmp=tmp_path)
    got = [bytes.fromhex(h).decode("utf-8", errors="replace") for h in out]
    want = tok.decode_batch(ids, skip_special_tokens=False)
    assert got == want, first_mismatches([str(x) for x in ids], got, want)


@pytest.mark.parametrize("change, message", [
    (lambda tj: tj["pre_tokenizer"]["pretokenizers"].insert(0, {"type": "Digits", "individual_digits": True}),
     "has pre-tokenizer"),
    (lambda tj: tj.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                                         "split": True}), "has pre-tokenizer"),
    (lambda tj: tj["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True), "has pre-tokenizer"),
    (lambda tj: tj.update(normalizer={"type": "NFKC"}), "has normalizer"),
])
def test_unsupported_rules_are_a_clear_error(tmp_path, change, message):
    d = write_checkpoint_tokenizer(train_falcon(True, 1.0), tmp_path / "ckpt")
    tj = json.loads((d / "tokenizer.json").read_text())
    change(tj)
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(click.ClickException, match=message) as err:
        convert(d, tmp_path / "x.gguf")
    assert "supported" in err.value.message


def test_engine_knows_the_falcon_pre_names(driver, falcon, tmp_path):
    """GGUFs from other converters name these rules "falcon3" (llama.cpp) or "falcon_e"
    (microsoft/BitNet); both are the Llama-3 rules with ignore_merges."""
    tok, _, path, pre = falcon
    if pre != "llama-bpe":
        pytest.skip("the names stand for ignore_merges vocabularies")
    corpus = CORPUS[:200]
    want = [e.ids for e in tok.encode_batch(corpus, add_special_tokens=False)]
    for name in ("falcon3", "falcon_e"):
        renamed = tmp_path / f"{name}.txt"
        renamed.write_text(path.read_text().replace(f"pre {pre}\n", f"pre {name}\n", 1))
        got = [[int(x) for x in line.split()] for line in
               run_driver(driver, renamed, "encode", [t.encode("utf-8").hex() for t in corpus], tmp=tmp_path)]
        assert got == want, first_mismatches(corpus, got, want)
