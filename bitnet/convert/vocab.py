"""Tokenizer export for the GGUF converter, and a SentencePiece tokenizer builder for tests.

``add_tokenizer`` writes the tokenizer.* keys of a Hugging Face model directory in llama.cpp's
layout, for the two tokenizer kinds the engine runs:

- byte-level BPE (GPT-2 / Llama-3 / Falcon3 / Falcon-E): tokenizer.json with a ByteLevel
  pre-tokenizer and no normalizer -> tokenizer.ggml.model "gpt2", tokens, token types and merges;
  the pre-tokenizer is named by its rules (see _pre_tokenizer_name), not by the model family;
- SentencePiece BPE (Llama-2, 1bitLLM): tokenizer.model (the source of truth, read with the
  `sentencepiece` package) or, when only that is shipped, a tokenizer.json holding a BPE model with
  byte_fallback -> tokenizer.ggml.model "llama", tokens, scores, token types and the dummy-prefix
  rule. Added tokens past the SentencePiece vocabulary (1bitLLM's pad tokens) come from
  tokenizer.json / added_tokens.json / tokenizer_config.json.

Both pad the vocabulary with unused "[PADn]" tokens up to the embedding's row count (checkpoints
often round vocab_size up).

``build_spm_tokenizer`` trains a small Llama-2-style SentencePiece tokenizer and writes it the way
Llama-2 checkpoints ship it (tokenizer.model, tokenizer.json, tokenizer_config.json).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import click
from gguf import GGUFWriter

from bitnet.common import read_json

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# The Llama-3 pre-tokenizer split regex. Falcon3 and Falcon-E use the same rules (llama.cpp runs
# its "falcon3" and the BitNet fork's "falcon_e" with exactly this regex), so their tokenizer.json
# files are named by these rules too.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2's (and Qwen3's) split: Llama 3's with single digits; llama.cpp names it "qwen2".
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")

SPACE = "\u2581"  # "▁": how SentencePiece writes a space inside pieces
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
SPM_BPE = 2  # sentencepiece TrainerSpec.ModelType.BPE
PAD_SCORE = -1000.0  # score of the padding tokens (llama.cpp's value); they never merge anyway

# How the engine prepends "▁" to text (GGUF key tokenizer.ggml.prepend_scheme; absent means
# "sentencepiece"): sentencepiece/legacy Hugging Face files prefix every run of text between added
# tokens; the Metaspace pre-tokenizer of newer files skips text that starts with a space, and with
# prepend_scheme "first" prefixes only the run at the start of the input.
PREPEND_SCHEME_KEY = "tokenizer.ggml.prepend_scheme"

# Llama-2's chat format: [INST] turns, the system prompt folded into the first user turn.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'user' %}"
    "{% if loop.first and system is not none %}"
    "{% set text = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + m['content'] %}"
    "{% else %}{% set text = m['content'] %}{% endif %}"
    "{{ bos_token + '[INST] ' + text.strip() + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'].strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)


# ---- entry point ----------------------------------------------------------------------------------


def add_tokenizer(writer: GGUFWriter, model_dir: Path, n_vocab: int) -> None:
    """Write the tokenizer.* keys for the tokenizer in model_dir, padded to n_vocab tokens (the
    embedding's rows). Dispatch: a byte-level BPE tokenizer.json wins (some byte-level repos ship a
    tiktoken file named tokenizer.model); else tokenizer.model is read as SentencePiece; else a
    tokenizer.json with a byte-fallback BPE is read as SentencePiece. Bad or missing files are a
    click.ClickException naming the file and what was expected."""
    tj_path, sp_path = model_dir / "tokenizer.json", model_dir / "tokenizer.model"
    tj = read_json(tj_path, required=False)
    tcfg = read_json(model_dir / "tokenizer_config.json", required=False)
    gcfg = read_json(model_dir / "generation_config.json", required=False)
    model = tj.get("model", {})
    if tj and model.get("type") == "BPE" and not model.get("byte_fallback"):
        _add_byte_level_bpe(writer, tj, tcfg, gcfg, n_vocab)
    elif sp_path.is_file():
        _add_spm(writer, _spm_from_model_file(sp_path, tj, model_dir), tcfg, gcfg, n_vocab)
    elif tj and model.get("type") == "BPE":
        _add_spm(writer, _spm_from_tokenizer_json(tj, tj_path), tcfg, gcfg, n_vocab)
    elif tj:
        raise click.ClickException(
            f"{tj_path} holds a {model.get('type')} model; supported are byte-level BPE (GPT-2 / "
            f"Llama-3 style) and SentencePiece BPE with byte fallback (Llama-2 style)"
        )
    else:
        raise click.ClickException(
            f"{model_dir} has neither tokenizer.json nor tokenizer.model: copy the tokenizer files "
            f"of the checkpoint into it"
        )


def _token_id(name: str | dict | None, vocab: dict[str, int]) -> int | None:
    if isinstance(name, dict):  # {"content": "<|eot_id|>", ...} in older tokenizer_config files
        name = name.get("content")
    return vocab.get(name) if name else None


def _first(value):
    return value[0] if isinstance(value, list) else value


def _pad_vocab(tokens: list[str], n_vocab: int, source: str) -> int:
    """Rows past the tokenizer's last token, or a ClickException when it has more than n_vocab."""
    if len(tokens) > n_vocab:
        raise click.ClickException(
            f"{source} has {len(tokens)} tokens but config.json says vocab_size {n_vocab}; the "
            f"tokenizer does not belong to this checkpoint"
        )
    return n_vocab - len(tokens)


# ---- byte-level BPE -------------------------------------------------------------------------------


def _is_split(step: dict, regex: str) -> bool:
    """Whether a Split step cuts text into the matches of regex, each its own piece: behavior
    Isolated, or Removed with invert (which keeps exactly the matches; every character is matched
    by the regexes accepted here, so nothing is dropped)."""
    if step.get("type") != "Split" or step.get("pattern", {}).get("Regex") != regex:
        return False
    behavior, invert = str(step.get("behavior", "")).lower(), bool(step.get("invert", False))
    return (behavior, invert) in (("isolated", False), ("removed", True))


def _pre_tokenizer_name(tj: dict) -> str:
    """GGUF tokenizer.ggml.pre (llama.cpp's name) for the rules of a byte-level tokenizer.json:
    its pre-tokenizer and whether its BPE model sets ignore_merges (a piece that is a whole token
    is that token), which the engine takes from the name. A ClickException for anything else.

    Llama-3's Split + ByteLevel(use_regex=false) is "llama-bpe" with ignore_merges (Llama 3,
    Falcon3, Falcon-E) and "smaug-bpe" without it; a lone ByteLevel with its own regex is "gpt-2"."""
    pre = tj.get("pre_tokenizer")
    items = (pre or {}).get("pretokenizers", [pre] if pre else [])
    ignore_merges = bool(tj["model"].get("ignore_merges", False))
    if (len(items) == 2 and _is_split(items[0], LLAMA3_SPLIT) and items[1].get("type") == "ByteLevel"
            and not items[1].get("use_regex", True) and not items[1].get("add_prefix_space", False)):
        return "llama-bpe" if ignore_merges else "smaug-bpe"
    if (len(items) == 2 and _is_split(items[0], QWEN2_SPLIT) and items[1].get("type") == "ByteLevel"
            and not items[1].get("use_regex", True) and not items[1].get("add_prefix_space", False)
            and not ignore_merges):
        return "qwen2"
    if (len(items) == 1 and items[0].get("type") == "ByteLevel" and items[0].get("use_regex", True)
            and not items[0].get("add_prefix_space", False) and not ignore_merges):
        return "gpt-2"
    raise click.ClickException(
        f"tokenizer.json has pre-tokenizer {json.dumps(pre)[:200]} (ignore_merges={ignore_merges}); "
        f"supported are the byte-level rules of Llama 3 / Falcon3 / Falcon-E (Split with their regex, "
        f"then ByteLevel without regex) and of GPT-2 (ByteLevel with its regex)"
    )


def _add_byte_level_bpe(writer: GGUFWriter, tj: dict, tcfg: dict, gcfg: dict, n_vocab: int) -> None:
    model = tj["model"]
    # The engine feeds raw text to the pre-tokenizer. NFC (Qwen2-style vocabularies) is let through
    # as llama.cpp does: text already in NFC, which is nearly all text, tokenizes identically.
    if tj.get("normalizer") not in (None, {"type": "NFC"}):
        raise click.ClickException(
            f"tokenizer.json has normalizer {json.dumps(tj['normalizer'])[:200]}; byte-level "
            f"tokenizers are supported only without one (as Llama 3's and GPT-2's)"
        )
    pre = _pre_tokenizer_name(tj)
    vocab: dict[str, int] = dict(model["vocab"])
    specials = {}
    for added in tj.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        specials[added["id"]] = added.get("special", False)
    if max(vocab.values()) >= n_vocab:
        raise click.ClickException(
            f"tokenizer.json has token id {max(vocab.values())} but config.json says vocab_size {n_vocab}"
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [TOKEN_UNUSED] * n_vocab
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = TOKEN_NORMAL if i not in specials else (TOKEN_CONTROL if specials[i] else TOKEN_USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)

    bos = _token_id(tcfg.get("bos_token"), vocab)
    if bos is None:
        bos = gcfg.get("bos_token_id")
    # The end-of-sequence the model emits: tokenizer_config's eos_token (<|eot_id|> for chat
    # models), else generation_config's first eos id.
    eos = _token_id(tcfg.get("eos_token"), vocab)
    if eos is None:
        eos = _first(gcfg.get("eos_token_id"))
    if bos is not None:
        writer.add_bos_token_id(int(bos))
    if eos is not None:
        writer.add_eos_token_id(int(eos))
    if "<|eot_id|>" in vocab:
        writer.add_eot_token_id(vocab["<|eot_id|>"])
    pad = _token_id(tcfg.get("pad_token"), vocab)
    if pad is not None:
        writer.add_pad_token_id(pad)
    writer.add_add_bos_token(_adds_bos(tj, tcfg, bos))
    if tcfg.get("chat_template"):  # a string, or a list of named templates
        writer.add_chat_template(tcfg["chat_template"])


def _adds_bos(tj: dict, tcfg: dict, bos: int | None) -> bool:
    """Whether encoding prepends BOS: tokenizer_config's add_bos_token, else whether the
    post-processor's single-sequence template starts with the BOS token."""
    if "add_bos_token" in tcfg:
        return bool(tcfg["add_bos_token"])
    post = tj.get("post_processor") or {}
    for proc in post.get("processors", [post]):
        if proc.get("type") == "TemplateProcessing" and proc.get("single"):
            first = proc["single"][0].get("SpecialToken", {}).get("id")
            return bos is not None and bos in proc.get("special_tokens", {}).get(first, {}).get("ids", [])
    return False


# ---- SentencePiece --------------------------------------------------------------------------------


class _SpmVocab:
    """A SentencePiece vocabulary as the engine wants it: parallel token/score/type lists plus the
    special ids and the space-prefix rule, whichever file it came from."""

    def __init__(self, source: str):
        self.source = source
        self.tokens: list[str] = []
        self.scores: list[float] = []
        self.types: list[int] = []
        self.ids: dict[str, int] = {}  # token text -> first id
        self.bos = self.eos = self.unk = self.pad = None  # ids from the file itself
        self.add_space_prefix = True
        self.prepend_scheme = "sentencepiece"

    def append(self, text: str, score: float, ttype: int) -> None:
        self.ids.setdefault(text, len(self.tokens))
        self.tokens.append(text)
        self.scores.append(score)
        self.types.append(ttype)

    def add_added_tokens(self, added: dict[int, tuple[str, bool]]) -> None:
        """Added tokens (id -> (text, special)) past the vocabulary, e.g. 1bitLLM's pad tokens;
        ids already in the vocabulary must name the same text."""
        for i in sorted(added):
            text, special = added[i]
            if i < len(self.tokens):
                if self.tokens[i] != text:
                    raise click.ClickException(
                        f"{self.source}: added token {text!r} has id {i}, which is {self.tokens[i]!r} "
                        f"in the SentencePiece model; the tokenizer files disagree"
                    )
                continue
            while len(self.tokens) < i:  # a hole in the added ids: keep later ids where they are
                self.append(f"[PAD{len(self.tokens)}]", PAD_SCORE, TOKEN_UNUSED)
            self.append(text, 0.0, TOKEN_CONTROL if special else TOKEN_USER_DEFINED)


def _load_spm_proto(path: Path):
    """The ModelProto of a SentencePiece file, checked by sentencepiece's own loader."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    data = path.read_bytes()
    try:
        sentencepiece.SentencePieceProcessor(model_proto=data)
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(data)
    except Exception as e:  # sentencepiece raises RuntimeError, protobuf DecodeError
        raise click.ClickException(
            f"{path} is not a SentencePiece model ({str(e).strip().splitlines()[-1][:200]}); replace "
            f"it with the checkpoint's own tokenizer.model"
        ) from None
    return proto


def _added_tokens(tj: dict, model_dir: Path) -> dict[int, tuple[str, bool]]:
    """id -> (text, special) of the checkpoint's added tokens: tokenizer.json's added_tokens, then
    tokenizer_config's added_tokens_decoder, then added_tokens.json (which has no special flag:
    those count as special, as pad tokens are)."""
    out: dict[int, tuple[str, bool]] = {}
    for name, id_ in read_json(model_dir / "added_tokens.json", required=False).items():
        out[int(id_)] = (name, True)
    tcfg = read_json(model_dir / "tokenizer_config.json", required=False)
    for id_, t in tcfg.get("added_tokens_decoder", {}).items():
        out[int(id_)] = (t["content"], bool(t.get("special", False)))
    for t in tj.get("added_tokens", []):
        out[int(t["id"])] = (t["content"], bool(t.get("special", False)))
    return out


def _spm_from_model_file(path: Path, tj: dict, model_dir: Path) -> _SpmVocab:
    proto = _load_spm_proto(path)
    if proto.trainer_spec.model_type != SPM_BPE:
        raise click.ClickException(
            f"{path} is a SentencePiece model of type {proto.trainer_spec.model_type} (1 is unigram); "
            f"only BPE models (type 2, as Llama-2's) are supported"
        )
    norm = proto.normalizer_spec
    if norm.precompiled_charsmap or norm.remove_extra_whitespaces or not norm.escape_whitespaces:
        raise click.ClickException(
            f"{path} normalizes text (rule {norm.name!r}, remove_extra_whitespaces="
            f"{norm.remove_extra_whitespaces}); only the identity rule of Llama-2's tokenizer is supported"
        )
    v = _SpmVocab(str(path))
    for p in proto.pieces:
        v.append(p.piece, float(p.score), int(p.type))  # SentencePiece's type numbers are GGUF's
    spec = proto.trainer_spec
    v.unk, v.bos, v.eos, v.pad = (i if 0 <= i < len(v.tokens) else None
                                  for i in (spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id))
    v.add_space_prefix = bool(norm.add_dummy_prefix)
    v.add_added_tokens(_added_tokens(tj, model_dir))
    return v


def _tokenizer_json_prepend(tj: dict, source: str) -> tuple[bool, str]:
    """(add_space_prefix, prepend scheme) of a Llama-2-style tokenizer.json: the legacy normalizer
    [Prepend("▁")], Replace(" ", "▁") with no pre-tokenizer, or no normalizer and a Metaspace
    pre-tokenizer that does not split."""
    norm, pre = tj.get("normalizer"), tj.get("pre_tokenizer")
    steps = (norm or {}).get("normalizers", [norm] if norm else [])
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    if pre is None and steps and steps[-1] == replace:
        prepend = [s for s in steps[:-1]]
        if prepend in ([], [{"type": "Prepend", "prepend": SPACE}]):
            return bool(prepend), "sentencepiece"
    if norm is None and pre and pre.get("type") == "Metaspace" and pre.get("replacement") == SPACE \
            and not pre.get("split", True):
        scheme = pre.get("prepend_scheme", "always")
        return scheme != "never", {"always": "metaspace-always", "first": "metaspace-first",
                                   "never": "sentencepiece"}[scheme]
    raise click.ClickException(
        f"{source}: a byte-fallback BPE with normalizer {json.dumps(norm)[:120]} and pre-tokenizer "
        f"{json.dumps(pre)[:120]}; only Llama-2's rules (Prepend + Replace, or Metaspace without "
        f"split) are supported"
    )


def _spm_from_tokenizer_json(tj: dict, path: Path) -> _SpmVocab:
    """A SentencePiece vocabulary rebuilt from tokenizer.json alone. It has no scores: a token
    made by merges scores minus the rank of its best merge, so the engine's score order is the
    merge order; other multi-character tokens are unreachable by BPE and become unused."""
    model = tj["model"]
    add_prefix, scheme = _tokenizer_json_prepend(tj, str(path))
    vocab: dict[str, int] = model["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise click.ClickException(f"{path}: the model's token ids are not 0..{len(by_id) - 1}")
    rank: dict[str, int] = {}
    for r, m in enumerate(model.get("merges", [])):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(left + right, r)
    added = {int(t["id"]): (t["content"], bool(t.get("special", False))) for t in tj.get("added_tokens", [])}
    unk = model.get("unk_token")
    v = _SpmVocab(str(path))
    for text, i in by_id:
        if i in added:
            ttype, score = (TOKEN_UNKNOWN if text == unk else TOKEN_CONTROL if added[i][1]
                            else TOKEN_USER_DEFINED), 0.0
        elif text == unk:
            ttype, score = TOKEN_UNKNOWN, 0.0
        elif BYTE_PIECE.fullmatch(text):
            ttype, score = TOKEN_BYTE, 0.0
        elif text in rank:
            ttype, score = TOKEN_NORMAL, -float(rank[text])
        else:
            ttype, score = (TOKEN_NORMAL if len(text) == 1 else TOKEN_UNUSED), 0.0
        v.append(text, score, ttype)
    v.add_added_tokens(added)
    v.unk = vocab.get(unk) if unk else None
    v.add_space_prefix, v.prepend_scheme = add_prefix, scheme
    return v


def _add_spm(writer: GGUFWriter, v: _SpmVocab, tcfg: dict, gcfg: dict, n_vocab: int) -> None:
    n_pad = _pad_vocab(v.tokens, n_vocab, v.source)
    for _ in range(n_pad):
        v.append(f"[PAD{len(v.tokens)}]", PAD_SCORE, TOKEN_UNUSED)
    # tokenizer_config names win over the file's own ids (they are what transformers uses).
    bos = _token_id(tcfg.get("bos_token"), v.ids)
    bos = bos if bos is not None else v.bos if v.bos is not None else gcfg.get("bos_token_id")
    eos = _token_id(tcfg.get("eos_token"), v.ids)
    eos = eos if eos is not None else v.eos if v.eos is not None else _first(gcfg.get("eos_token_id"))
    unk = _token_id(tcfg.get("unk_token"), v.ids)
    unk = unk if unk is not None else v.unk
    pad = _token_id(tcfg.get("pad_token"), v.ids)
    pad = pad if pad is not None else v.pad if v.pad is not None else gcfg.get("pad_token_id")
    if tcfg.get("add_prefix_space") is False:  # transformers' switch for the dummy prefix
        v.add_space_prefix = False

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(v.tokens)
    writer.add_token_scores(v.scores)
    writer.add_token_types(v.types)
    for key_writer, value in ((writer.add_bos_token_id, bos), (writer.add_eos_token_id, eos),
                              (writer.add_unk_token_id, unk), (writer.add_pad_token_id, pad)):
        if value is not None and 0 <= int(value) < n_vocab:
            key_writer(int(value))
    writer.add_add_bos_token(bool(tcfg.get("add_bos_token", True)))
    writer.add_add_eos_token(bool(tcfg.get("add_eos_token", False)))
    writer.add_add_space_prefix(v.add_space_prefix)
    if v.prepend_scheme != "sentencepiece":
        writer.add_string(PREPEND_SCHEME_KEY, v.prepend_scheme)
    if tcfg.get("chat_template"):
        writer.add_chat_template(tcfg["chat_template"])


# ---- the builder ----------------------------------------------------------------------------------


def _spm_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """BPE merges equivalent to a SentencePiece BPE vocabulary, as Hugging Face's converter makes
    them: every split of a normal piece into two normal pieces, ordered by the piece's score (best
    first), then by the lengths of the halves, longest left first. Control, byte and unknown pieces
    never take part: SentencePiece cannot build them from text."""
    normal = {text: i for i, (text, _, ttype) in enumerate(pieces) if ttype == TOKEN_NORMAL}
    merges = []
    for text, i in normal.items():
        score = pieces[i][1]
        for k in range(1, len(text)):
            left, right = text[:k], text[k:]
            if left in normal and right in normal:
                merges.append((-score, -len(left), -len(right), left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def build_spm_tokenizer(out_dir: Path, vocab_size: int, corpus: list[str] | None = None) -> None:
    """Train a Llama-2-style SentencePiece BPE tokenizer of exactly vocab_size tokens on corpus
    (default: Python's help text, pydoc_data.topics) and write tokenizer.model, tokenizer.json
    (Hugging Face's legacy Llama-2 layout: Prepend + Replace normalizer, byte-fallback BPE) and
    tokenizer_config.json (<s>/</s>/<unk>, add_bos_token, a Llama-2 chat template) into out_dir.

    The settings are Llama-2's: BPE, byte fallback, digits split, whitespace-only pieces allowed,
    identity normalization, dummy prefix; ids 0/1/2 are <unk>/<s>/</s>, then the 256 byte pieces.
    When the corpus cannot fill vocab_size, the rest are added special tokens <reserved_N> (as
    1bitLLM's vocabulary carries added pad tokens past its SentencePiece model). Training is
    single-threaded and deterministic; it takes well under a second on the default corpus.
    """
    import pydoc_data.topics
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    if vocab_size < 300:
        raise click.ClickException(f"vocab_size {vocab_size} is too small for a byte-fallback "
                                   f"SentencePiece vocabulary: use at least 300")
    if corpus is None:
        corpus = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        hard_vocab_limit=False,  # stop where the corpus runs out of merges; padded below
        byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        character_coverage=0.99995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        max_sentence_length=1 << 20, num_threads=1, minloglevel=2,
    )
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]

    tok = Tokenizer(models.BPE(
        vocab={text: i for i, (text, _, _) in enumerate(pieces)}, merges=_spm_merges(pieces),
        unk_token="<unk>", fuse_unk=True, byte_fallback=True, dropout=None,
    ))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<reserved_{i}>" for i in range(vocab_size - len(pieces))]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
    assert tok.get_vocab_size() == vocab_size
    tok.save(str(out_dir / "tokenizer.json"))

    added = {str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True} for s in specials}
    config = {
        "added_tokens_decoder": added, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": True,
        "clean_up_tokenization_spaces": False, "chat_template": LLAMA2_CHAT_TEMPLATE,
        # Not LlamaTokenizer: transformers 5 rebuilds that one's pipeline with Metaspace rules
        # (" x" loses its second "▁"), while the fast class runs tokenizer.json as written,
        # which is what sentencepiece does.
        "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
