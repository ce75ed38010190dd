"""The C++ byte-level BPE tokenizer against Hugging Face `tokenizers` on the same vocabulary.

Vocabularies are trained here with `tokenizers` on pydoc_data.topics, Llama-3 style (Split regex
+ ByteLevel without its regex, ignore_merges, as in Llama 3's tokenizer.json) at two sizes, and
GPT-2 style (ByteLevel with its regex). Each is dumped to the plain-text format of
tests/cpp/tokenize_driver.cpp, which runs the real bitnet::Tokenizer; ids, decoded text and
pre-tokenizer pieces must equal what `tokenizers` gives, on a seeded corpus of >1,000 strings
(many scripts, emoji, digit and whitespace runs, contractions, code, special tokens, odd code
points) and on every Unicode code point.

The driver comes from $BITNET_BUILD_DIR/bin (default build/bin) when it is newer than the
tokenizer sources, else it is compiled with $CXX (default g++) into a temporary directory.
"""

from __future__ import annotations

import codecs
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eot_id|>!"]  # last: longest match
USER_DEFINED = ["<tool_call>", "<tool"]  # non-special added tokens; "<tool" is a prefix of the other
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4


# ---- the driver ---------------------------------------------------------------------------------


def driver_sources() -> list[Path]:
    # tokenizer_gguf.cpp needs the GGUF reader, which the driver (vocabularies from text) does not.
    tok = [p for p in sorted((ROOT / "src" / "tokenizer").glob("*")) if p.name != "tokenizer_gguf.cpp"]
    return tok + [
        ROOT / "src" / "util" / "common.cpp",
        ROOT / "src" / "util" / "common.h",
        ROOT / "tests" / "cpp" / "tokenize_driver.cpp",
    ]


@pytest.fixture(scope="session")
def driver(tmp_path_factory) -> Path:
    built = Path(os.environ.get("BITNET_BUILD_DIR", ROOT / "build")) / "bin" / "tokenize_driver"
    newest = max(p.stat().st_mtime for p in driver_sources())
    if os.access(built, os.X_OK) and built.stat().st_mtime >= newest:
        return built
    cxx = os.environ.get("CXX", "g++")
    if not shutil.which(cxx):
        pytest.skip(f"no built {built} and no C++ compiler {cxx!r} to build it")
    out = tmp_path_factory.mktemp("tokdriver") / "tokenize_driver"
    srcs = [str(p) for p in driver_sources() if p.suffix == ".cpp"]
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
           f"-I{ROOT / 'src'}", f"-I{ROOT / 'include'}", *srcs, "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stderr[-4000:]}"
    return out


def run_driver(driver: Path, vocab: Path, mode: str, lines: list[str] | None, *flags: str,
               tmp: Path | None = None) -> list[str]:
    args = [str(driver), str(vocab), mode]
    if lines is not None:
        assert tmp is not None
        inp = tmp / f"{mode}.in"
        inp.write_text("".join(line + "\n" for line in lines))
        args.append(str(inp))
    res = subprocess.run([*args, *flags], capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(args)} failed: {res.stderr[-2000:]}"
    return res.stdout.splitlines()


def encode_driver(driver, vocab, tmp, texts, *flags) -> list[list[int]]:
    out = run_driver(driver, vocab, "encode", [t.encode("utf-8").hex() for t in texts], *flags, tmp=tmp)
    assert len(out) == len(texts)
    return [[int(x) for x in line.split()] for line in out]


# ---- vocabularies ---------------------------------------------------------------------------------


def pydoc_text() -> list[str]:
    import pydoc_data.topics

    return [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]


def train(style: str, vocab_size: int, keep_merges: float = 1.0) -> Tokenizer:
    """A byte-level BPE trained on pydoc topics, with SPECIAL and USER_DEFINED added tokens.
    keep_merges < 1 drops the last merges: their tokens stay in the vocabulary, reachable only
    through ignore_merges, which makes that rule visible in the ids."""
    tok = Tokenizer(models.BPE(ignore_merges=(style == "llama3")))
    if style == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(pydoc_text(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in USER_DEFINED])
    if keep_merges < 1:
        spec = json.loads(tok.to_str())
        merges = spec["model"]["merges"]
        spec["model"]["merges"] = merges[: int(len(merges) * keep_merges)]
        tok = Tokenizer.from_str(json.dumps(spec))
    assert json.loads(tok.to_str())["model"]["ignore_merges"] == (style == "llama3")
    return tok


def dump_vocab(tok: Tokenizer, pre: str, path: Path, *, drop_token: str | None = None,
               extra_merges: tuple[str, ...] = (), types: bool = True, model: str = "gpt2") -> Path:
    """Write the driver's vocabulary format (see tests/cpp/tokenize_driver.cpp)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    added = tok.get_added_tokens_decoder()
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges] + list(extra_merges)
    lines = [f"model {model}", f"pre {pre}", f"bos {vocab['<|begin_of_text|>']}",
             f"eos {vocab['<|end_of_text|>']}", f"eot {vocab['<|eot_id|>']}", "add_bos 1"]
    for text, i in by_id:
        if text == drop_token:
            continue
        lines.append(f"token {text.encode('utf-8').hex()}")
        if types:
            t = TOKEN_NORMAL if i not in added else TOKEN_CONTROL if added[i].special else TOKEN_USER_DEFINED
            lines.append(f"type {t}")
    lines += [f"merge {m.encode('utf-8').hex()}" for m in merges]
    path.write_text("\n".join(lines) + "\n")
    return path


# name: (style, vocab size, tokenizer.ggml.pre, fraction of merges kept)
VOCABS = {"llama3-300": ("llama3", 300, "llama-bpe", 1.0), "llama3-4000": ("llama3", 4000, "llama-bpe", 1.0),
          "llama3-4000-cut": ("llama3", 4000, "llama-bpe", 0.5), "gpt2-1000": ("gpt2", 1000, "gpt2", 1.0)}


@pytest.fixture(scope="session", params=list(VOCABS))
def vocab(request, tmp_path_factory):
    """(name, HF tokenizer, dump path, pre-tokenizer regex) for each vocabulary."""
    style, size, pre, keep = VOCABS[request.param]
    tok = train(style, size, keep)
    path = dump_vocab(tok, pre, tmp_path_factory.mktemp(request.param) / "vocab.txt")
    return request.param, tok, path, LLAMA3_REGEX if style == "llama3" else GPT2_REGEX


# ---- the corpus -----------------------------------------------------------------------------------

CLASSES = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "accents": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿœšžßÀÉÎÕÜŒŠŽĳǅﬁ",
    "combining": "e\u0301a\u0308\u0301\u0323\u20dd\u0345",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТ",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘάέήίόύώϊϋΐ",
    "arabic": "العربيةمرحباكتابسلام\u064b\u064e\u0650\u0651",
    "hebrew": "שלוםעולםאבגדהוזחטיכלמנסעפצקרשת\u05b0\u05b4\u05bc",
    "devanagari": "नमस्तेहिन्दीभाषाकखगघङचछजझञ\u093e\u093f\u0940\u094d\u0902",
    "thai": "สวัสดีภาษาไทยกขคงจฉชซ\u0e31\u0e34\u0e35\u0e48\u0e49",
    "cjk": "中文日本語漢字東京大学汉语简体繁體のはをにがカタカナひらがな",
    "hangul": "한국어안녕하세요대한민국ㄱㄴㄷㅏㅓ",
    "digits": "0123456789",
    "other_numbers": "٠١٢٣٤٥६७८９１２²³½¾ⅫⅣ①⑩𝟎𝟗",
    "spaces": " \t\n\r\u00a0\u3000\u2009\u2028\u2029\u0085\x0b\x0c\u1680\u202f\u205f\u200b\u180e\ufeff",
    "punct": "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'«»“”‘’…—–·¿¡§¶†‡•",
    "symbols": "€£¥₹©®™°±×÷∑∞≈≠≤≥←→↑↓♠♣♥♦★☆✓✗",
    "emoji": ["😀", "😂", "🥲", "👍", "👍🏽", "👋🏿", "❤️", "🇫🇷", "🇯🇵", "🏳️‍🌈", "👨‍👩‍👧‍👦", "🧑🏻‍💻", "#️⃣", "🤖"],
    "odd": ["\ufffd", "\ue000", "\U000f0000", "\ufdd0", "\uffff", "\U0010ffff", "\x00", "\x1f", "\x7f",
            "\u0301", "\u200d", "\U0001d11e", "\U00010348", "\u017f", "\u212a", "\U0001e900"],
    "contractions": ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL",
                     "'lL", "'d", "'D", "'ſ", "'", "''", "’s"],
    "words": ["the", " the", "The", " don't", " I'LL", " we'Re", " it's", "hello", " world", " def",
              " return", " import", " None", "  ", "\n", "\r\n", "\n\n\n", "\t", "Python", " object"],
    "code": ["def f(x):\n    return x**2\n", "if (a <= b && c != d) { x += 1; }", "    ", "#include <stdio.h>",
             "for i in range(10):\n\tprint(i)", "x = [1, 2, 3]  # comment", "SELECT * FROM t;",
             "<div class=\"a\">&nbsp;</div>", "\"\"\"docstring\"\"\"", "λx.x", "0x7fff_ffff", "1e-5"],
    "special": SPECIAL + USER_DEFINED + ["<|eot_id|", "<|", "|>", "<tool_", "<|begin_of_text|><|eot_id|>"],
}


def sample_fragment(rng: random.Random, cls: str) -> str:
    pool = CLASSES[cls]
    if isinstance(pool, str):
        return "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))


def corpus() -> list[str]:
    """Deterministic test strings: handwritten cases, digit and space runs, pydoc paragraphs and
    random mixtures of all CLASSES."""
    rng = random.Random(20240607)
    out = [
        "", " ", "a", "Hello world", "Hello, world!", " leading space", "trailing space ",
        "I'LL do it, don't you THINK? We'Ve WON'T", "she's here; they're there; I'd've",
        "'s 'S 'ſ 'Ss 'LLx 'lL 'rE 'Ve'M'D", "naïve café résumé façade Zürich", "Привет, мир! Ёлка",
        "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "你好，世界！",
        "こんにちは世界", "안녕하세요 세계", "emoji 😀👍🏽🇫🇷👨‍👩‍👧‍👦 end", "1 12 123 1234 12345 123456 1234567",
        "3.14159 2,718 1_000_000 v1.2.3 ١٢٣ ९८७ ¹²³ ½", "tabs\tand\ttabs", "crlf\r\nline\r\n",
        "\n\n\nthree newlines", "a \n b", "a  \n\n  b", "  \t \n \r\n  x", "\u00a0nbsp\u00a0\u00a0x",
        "ideographic\u3000space\u3000\u3000", "thin\u2009space", "\u2028line sep\u2029para sep",
        "nel\u0085next", "zero\u200bwidth", "mongolian\u180evowel", "\ufeffBOM", "lone \u0301 mark",
        "\u0301\u0301 start", "replacement \ufffd char", "private \ue000\U000f0000", "nonchar \ufdd0 \uffff",
        "max \U0010ffff", "ctrl \x00\x01\x1f\x7f", "<|begin_of_text|>Hello<|eot_id|>",
        "<|eot_id|>!<|eot_id|>?", "x<tool_call>y<toolz", "<|end_of_text|><|end_of_text|>",
        "<|begin_of_text|", "   leading spaces", "trailing spaces   ", "   ", "\t\t\t", "\n", "\r",
        "!!!???...", " !!! ??? ...\n\n", "...\r\n\r\n", "a.b,c;d:e", "x'y z's 'abc'", "' s",
        "Kelvin \u212a and long s \u017f", "ǅungla ﬁne ĳssel", "𝐀𝐁𝐂 𝟏𝟐𝟑", "\U0001e900\U0001e922",
        "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n",
    ]
    for n in range(1, 25):  # digit runs of every length, bare and in context
        digits = "".join(str((i * 7 + n) % 10) for i in range(n))
        out += [digits, f"x{digits}y", f" {digits}.", f"a {digits} b", "٣" * n]
    for run in [" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", " \n", "\n "]:
        for k in (1, 2, 3, 5):
            out += [f"a{run * k}b", f"{run * k}x", f"x{run * k}", f"!{run * k}!", f"1{run * k}2"]
    paras = [p for text in pydoc_text() for p in text.split("\n\n") if p.strip()]
    out += rng.sample(paras, 60)
    names = list(CLASSES)
    while len(out) < 1200:
        k = rng.randint(1, 10)
        out.append("".join(sample_fragment(rng, rng.choice(names)) for _ in range(k)))
    return out


CORPUS = corpus()


def first_mismatches(texts, got, want, limit=5) -> str:
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
    return f"{len(bad)}/{len(texts)} differ, e.g.\n" + "\n".join(
        f"  {t!r}: C++ {g} vs HF {w}" for t, g, w in bad[:limit])


# ---- tests ----------------------------------------------------------------------------------------


def test_corpus_is_large_and_varied():
    assert len(CORPUS) >= 1000 and len(set(CORPUS)) > 1000


def test_encode_matches_hf(driver, vocab, tmp_path):
    _, tok, path, _ = vocab
    want = [e.ids for e in tok.encode_batch(CORPUS, add_special_tokens=False)]
    got = encode_driver(driver, path, tmp_path, CORPUS)
    assert got == want, first_mismatches(CORPUS, got, want)


def test_encode_special_tokens_as_text_matches_hf(driver, vocab, tmp_path):
    _, tok, path, _ = vocab
    texts = [t for t in CORPUS if "<" in t]
    assert len(texts) > 20
    tok.encode_special_tokens = True
    try:
        want = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    finally:
        tok.encode_special_tokens = False
    got = encode_driver(driver, path, tmp_path, texts, "--no-special")
    assert got == want, first_mismatches(texts, got, want)
    specials = {tok.token_to_id(t) for t in SPECIAL}
    assert not any(specials & set(ids) for ids in got)


def test_add_bos(driver, vocab, tmp_path):
    _, tok, path, _ = vocab
    bos = tok.token_to_id("<|begin_of_text|>")
    texts = ["Hello", "", "<|eot_id|>"]
    got = encode_driver(driver, path, tmp_path, texts, "--bos")
    assert got == [[bos] + tok.encode(t, add_special_tokens=False).ids for t in texts]


def test_decode_matches_hf(driver, vocab, tmp_path):
    _, tok, path, _ = vocab
    ids = [e.ids for e in tok.encode_batch(CORPUS, add_special_tokens=False)]
    rng = random.Random(7)
    n = tok.get_vocab_size(with_added_tokens=True)
    ids += [[rng.randrange(n) for _ in range(rng.randint(1, 12))] for _ in range(500)]  # any bytes
    out = run_driver(driver, path, "decode", [" ".join(map(str, x)) for x in ids], tmp=tmp_path)
    got = [bytes.fromhex(h).decode("utf-8", errors="replace") for h in out]
    want = tok.decode_batch(ids, skip_special_tokens=False)
    assert got == want, first_mismatches([str(x) for x in ids], got, want)
    assert got[: len(CORPUS)] == CORPUS  # encoding is lossless


def cp_sweep_strings() -> list[str]:
    """Every code point (surrogates aside) after an apostrophe and before a letter, which exposes
    case folding in the contractions, then again in one of several contexts (letters, digits,
    spaces, newlines, punctuation) so that its class decides the pieces."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    contexts = ["a{}1", " {}!", "1{}a", "\n{}\n", "{} x", "!{}", "'r{}a", "'l{}a", "\t{}\t", "  {}  ",
                "\r\n{}'", "x{}'s"]
    out = []
    for start in range(0, len(cps), 2048):
        parts = []
        for i, c in enumerate(cps[start:start + 2048]):
            ch = chr(c)
            parts.append(f"'{ch}b" + contexts[(i + start // 2048) % len(contexts)].format(ch))
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("style", ["llama3", "gpt2"])
def test_pretokenizer_matches_hf_on_every_code_point(driver, tmp_path, style):
    regex, pre = (LLAMA3_REGEX, "llama-bpe") if style == "llama3" else (GPT2_REGEX, "gpt2")
    split = pre_tokenizers.Split(Regex(regex), behavior="isolated")
    texts = cp_sweep_strings() + CORPUS
    tok = train(style, 300)
    path = dump_vocab(tok, pre, tmp_path / "vocab.txt")
    out = run_driver(driver, path, "split", [t.encode("utf-8").hex() for t in texts], tmp=tmp_path)
    bad = []
    for text, line in zip(texts, out, strict=True):
        ends, pos = [], 0
        for piece, _ in split.pre_tokenize_str(text):
            pos += len(piece.encode("utf-8"))
            ends.append(pos)
        got = [int(x) for x in line.split()]
        if got != ends:
            raw = text.encode("utf-8")
            diff = next(i for i, (g, w) in enumerate(zip(got + [-1], ends + [-1])) if g != w)
            lo = max(0, (got + ends)[diff] - 12) if diff < len(got) else 0
            bad.append(f"  near {raw[lo:lo + 30].decode('utf-8', 'replace')!r}: C++ piece ends "
                       f"{got[max(0, diff - 2):diff + 2]} vs HF {ends[max(0, diff - 2):diff + 2]}")
    assert not bad, f"{len(bad)}/{len(texts)} strings split differently:\n" + "\n".join(bad[:5])


def per_byte_replace(err: UnicodeDecodeError):
    return "\ufffd", err.start + 1


codecs.register_error("bitnet_per_byte", per_byte_replace)


def test_invalid_utf8_round_trips_and_splits_as_replacement_chars(driver, vocab, tmp_path):
    """Ill-formed bytes (impossible from Python strings) are kept byte for byte and split as if
    each were one U+FFFD."""
    _, tok, path, regex = vocab
    rng = random.Random(11)
    samples = [b"\xff", b"\xc3", b"a\xc3b", b"\xe2\x82", b"\xe2\x82 x", b"\xed\xa0\x80", b"\xc0\xaf",
               b"\xf4\x90\x80\x80", b"\xf0\x9f\x98", b"'\x80s", b"abc\xfe\xfedef", b" \x80\x81 \n\xff1"]
    pool = [b"a", b" ", b"\n", b"1", b"'", b"!", b"\x80", b"\xbf", b"\xc3", b"\xe2", b"\xf0", b"\xff",
            "é".encode(), "😀".encode(), "中".encode()]
    samples += [b"".join(rng.choice(pool) for _ in range(rng.randint(1, 20))) for _ in range(300)]
    hexes = [s.hex() for s in samples]
    ids = run_driver(driver, path, "encode", hexes, tmp=tmp_path)
    decoded = run_driver(driver, path, "decode", ids, tmp=tmp_path)
    assert [bytes.fromhex(h) for h in decoded] == samples
    split = pre_tokenizers.Split(Regex(regex), behavior="isolated")
    for raw, line in zip(samples, run_driver(driver, path, "split", hexes, tmp=tmp_path), strict=True):
        ends = [0] + [int(x) for x in line.split()]
        got = [len(raw[a:b].decode("utf-8", "bitnet_per_byte")) for a, b in zip(ends, ends[1:])]
        want = [len(p) for p, _ in split.pre_tokenize_str(raw.decode("utf-8", "bitnet_per_byte"))]
        assert got == want, raw


def test_info_special_ids_and_end_of_generation(driver, vocab):
    _, tok, path, _ = vocab
    info = dict(line.split(" ", 1) for line in run_driver(driver, path, "info", None))
    v = tok.get_vocab(with_added_tokens=True)
    assert int(info["n_vocab"]) == len(v)
    assert (int(info["bos"]), int(info["eos"]), int(info["eot"])) == (
        v["<|begin_of_text|>"], v["<|end_of_text|>"], v["<|eot_id|>"])
    assert info["add_bos"] == "1"
    assert sorted(map(int, info["eog"].split())) == sorted([v["<|end_of_text|>"], v["<|eot_id|>"]])


@pytest.mark.parametrize("case, message", [
    ({"pre": "deepseek-llm"}, "pre-tokenizer 'deepseek-llm' is not supported"),
    ({"model": "bert"}, "tokenizer model 'bert' is not supported"),
    ({"drop_token": "Ġ"}, "lacks the token for byte 0x20"),
    ({"extra_merges": ("Ġ nosuchtoken",)}, "refers to a token not in the vocabulary"),
    ({"extra_merges": ("onlyone",)}, "is not of the form 'left right'"),
])
def test_inconsistent_vocabulary_is_a_clear_error(driver, tmp_path, case, message):
    tok = train("llama3", 300)
    case = dict(case)
    pre = case.pop("pre", "llama-bpe")
    path = dump_vocab(tok, pre, tmp_path / "vocab.txt", **case)
    res = subprocess.run([str(driver), str(path), "info"], capture_output=True, text=True)
    assert res.returncode == 1 and message in res.stderr, res.stderr


def test_token_types_length_mismatch_is_an_error(driver, tmp_path):
    path = dump_vocab(train("llama3", 300), "llama-bpe", tmp_path / "vocab.txt")
    lines = path.read_text().splitlines()
    lines.remove(next(line for line in lines if line.startswith("type ")))
    path.write_text("\n".join(lines) + "\n")
    res = subprocess.run([str(driver), str(path), "info"], capture_output=True, text=True)
    assert res.returncode == 1 and "token types for" in res.stderr, res.stderr


def test_engine_api_tokenizes_converted_model_like_hf(engine_lib, tiny_packed, tiny_gguf):
    """The whole path: the converter's GGUF vocabulary, loaded by the engine and used through the
    C API (bitnet_tokenize / bitnet_token_to_piece), against the checkpoint's tokenizer.json."""
    from bitnet.bindings import Model

    hf = Tokenizer.from_file(str(tiny_packed / "tokenizer.json"))
    with Model(tiny_gguf) as m:
        for text in CORPUS:
            want = hf.encode(text, add_special_tokens=False).ids
            assert m.tokenize(text, add_bos=False) == want, f"{text!r}"
            assert m.detokenize(want) == hf.decode(want, skip_special_tokens=False), f"{text!r}"
        text = CORPUS[0]
        assert m.tokenize(text, add_bos=True) == hf.encode(text, add_special_tokens=True).ids
