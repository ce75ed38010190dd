"""bitnet-perplexity's KL-divergence and HellaSwag modes against the same statistics computed here
in numpy from the bindings' logits (an independent implementation of the definitions):

- ``--kl-divergence-base FILE`` stores the tokens and each scored position's log-probabilities in
  float16; ``--kl-divergence`` then reports mean KL(base || model), how often the top tokens agree
  and both perplexities. Checked: a file against itself gives KLD ~0 (float16 rounding only) and
  100 % agreement; two different checkpoints with one tokenizer give the numpy values.
- ``--hellaswag``: each of four endings is scored by the mean log-probability of its tokens after
  the context; checked task by task against numpy's choice.
Bad input (wrong vocabulary, truncated base, mixed modes, a malformed task file) is one error line.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

import gguf_craft as gc
from conftest import convert_to

CTX = 32


def _run(engine_bin, *args, check=True):
    r = subprocess.run([str(engine_bin / "bitnet-perplexity"), "-t", "1", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _value(out: str, pattern: str) -> float:
    m = re.search(pattern, out)
    assert m, out
    return float(m.group(1))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from test_perplexity import _text

    path = tmp_path_factory.mktemp("kld") / "text.txt"
    path.write_text(_text(300, seed=3), encoding="utf-8")
    return path


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _chunk_logprobs(model_path, chunks: list[list[int]]) -> list[np.ndarray]:
    from bitnet.bindings import Context, Model

    with Model(model_path) as m, Context(m, n_ctx=CTX, n_threads=1, exact_output=True) as ctx:
        out = []
        for c in chunks:
            ctx.truncate(0)
            out.append(_log_softmax(ctx.decode(c, logits_all=True)))
        return out


def test_kld_against_itself_and_against_numpy(engine_bin, engine_lib, tiny_gguf, tiny_bf16, text_file, tmp_path):
    from bitnet.bindings import Model

    base = tmp_path / "base.kld"
    r = _run(engine_bin, "-m", tiny_gguf, "-f", text_file, "-c", CTX, "--chunks", 3, "--kl-divergence-base", base)
    ppl = _value(r.stdout, r"Final estimate: PPL = (\S+)")
    assert base.is_file() and not (tmp_path / "base.kld.tmp").exists()

    same = _run(engine_bin, "-m", tiny_gguf, "--kl-divergence-base", base, "--kl-divergence").stdout
    assert _value(same, r"Mean KLD = (\S+)") < 1e-5  # the float16 rounding of the stored log-probs
    assert _value(same, r"Same top token = (\S+)") == 100.0
    assert _value(same, r"PPL\(model\) = (\S+)") == pytest.approx(ppl, rel=1e-6)
    assert _value(same, r"PPL\(base\)  = (\S+)") == pytest.approx(ppl, rel=1e-3)

    other = convert_to(tiny_bf16, "i2_s")  # another checkpoint, the same tokenizer
    out = _run(engine_bin, "-m", other, "--kl-divergence-base", base, "--kl-divergence").stdout

    with Model(tiny_gguf) as m:
        ids = m.tokenize(text_file.read_text(encoding="utf-8"), add_bos=True)
        bos = m.bos
    chunks = [[bos] + ids[i * CTX + 1:(i + 1) * CTX] for i in range(3)]
    lb = [x.astype(np.float16).astype(np.float64) for x in _chunk_logprobs(tiny_gguf, chunks)]
    lq = _chunk_logprobs(other, chunks)
    kl, agree, nll_q = [], [], []
    for c, b, q in zip(chunks, lb, lq):
        for j in range(CTX // 2, CTX - 1):
            kl.append(float((np.exp(b[j]) * (b[j] - q[j])).sum()))
            agree.append(int(np.argmax(b[j]) == np.argmax(q[j])))
            nll_q.append(-q[j][c[j + 1]])
    assert _value(out, r"Mean KLD = (\S+)") == pytest.approx(np.mean(kl), rel=1e-4, abs=1e-6)
    assert _value(out, r"Maximum KLD = (\S+)") == pytest.approx(max(kl), rel=1e-4, abs=1e-6)
    assert _value(out, r"Same top token = (\S+)") == pytest.approx(100 * np.mean(agree), abs=1e-3)
    assert _value(out, r"PPL\(model\) = (\S+)") == pytest.approx(np.exp(np.mean(nll_q)), rel=1e-5)
    assert np.mean(kl) > 1e-3  # two different checkpoints: the test sees a real divergence


def test_kld_bad_input(engine_bin, tiny_gguf, shipped_gguf, text_file, tmp_path):
    base = tmp_path / "base.kld"
    _run(engine_bin, "-m", tiny_gguf, "-f", text_file, "-c", CTX, "--chunks", 1, "--kl-divergence-base", base)
    cases = [
        (["-m", shipped_gguf, "--kl-divergence-base", base, "--kl-divergence"], "compare files of one model"),
        (["-m", tiny_gguf, "--kl-divergence"], "needs the base file"),
        (["-m", tiny_gguf, "-f", text_file, "--kl-divergence-base", base, "--kl-divergence"], "leave out -f"),
        (["-m", tiny_gguf, "--kl-divergence-base", base, "--kl-divergence", "-c", 64], "-c 32"),
        (["-m", tiny_gguf, "--kl-divergence-base", text_file, "--kl-divergence"], "not a base file"),
        (["-m", tiny_gguf, "-f", text_file, "-c", CTX, "--kl-divergence-base", tmp_path / "no" / "x.kld"],
         "cannot write base file"),
    ]
    cut = tmp_path / "cut.kld"
    cut.write_bytes(base.read_bytes()[:-7])
    cases.append((["-m", tiny_gguf, "--kl-divergence-base", cut, "--kl-divergence"], "truncated"))
    for args, words in cases:
        gc.assert_one_line_error(_run(engine_bin, *args, check=False), words)
    assert not (tmp_path / "no").exists()


def _tasks(rng, n):
    from test_perplexity import _text

    lines = []
    for t in range(n):
        sents = _text(60, seed=100 + t).splitlines()
        lines += [sents[0], str(rng.integers(4)), *sents[1:5]]
    return lines


def test_hellaswag_matches_numpy(engine_bin, engine_lib, tiny_gguf, tmp_path):
    from bitnet.bindings import Context, Model

    lines = _tasks(np.random.default_rng(0), 6)
    path = tmp_path / "hs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = _run(engine_bin, "-m", tiny_gguf, "-f", path, "--hellaswag").stdout

    right = []
    with Model(tiny_gguf) as m, Context(m, n_ctx=256, n_threads=1, exact_output=True) as ctx:
        for t in range(6):
            context, label, endings = lines[6 * t], int(lines[6 * t + 1]), lines[6 * t + 2:6 * t + 6]
            head = m.tokenize(context, add_bos=True)
            scores = []
            for e in endings:
                ids = m.tokenize(context + " " + e, add_bos=True)
                k = next((i for i, (a, b) in enumerate(zip(ids, head)) if a != b), min(len(ids), len(head)))
                ctx.truncate(0)
                lp = _log_softmax(ctx.decode(ids, logits_all=True))
                scores.append(np.mean([lp[j - 1][ids[j]] for j in range(max(k, 1), len(ids))]))
            right.append(int(np.argmax(scores)) == label)
    per_task = [float(x) for x in re.findall(r"^\d+\t(\S+)$", out, re.M)]
    assert per_task == pytest.approx([100 * np.mean(right[:i + 1]) for i in range(6)], abs=1e-3)
    assert _value(out, r"Final HellaSwag accuracy = (\S+)") == pytest.approx(100 * np.mean(right), abs=1e-3)

    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    gc.assert_one_line_error(_run(engine_bin, "-m", tiny_gguf, "-f", bad, "--hellaswag", check=False),
                             "6 lines per task")
    lines[1] = "7"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gc.assert_one_line_error(_run(engine_bin, "-m", tiny_gguf, "-f", bad, "--hellaswag", check=False),
                             "must be 0, 1, 2 or 3")


def test_script_passes_the_modes_through(engine_lib, tiny_gguf, text_file, tmp_path):
    import os
    import sys

    from conftest import ROOT

    env = {**os.environ, "BITNET_BUILD_DIR": str(engine_lib.parent.parent)}
    script = [sys.executable, str(ROOT / "utils" / "perplexity.py"), "-m", str(tiny_gguf), "-t", "1"]
    base = tmp_path / "b.kld"
    r = subprocess.run([*script, "-f", str(text_file), "-c", str(CTX), "--chunks", "1", "--kl-divergence-base",
                        str(base)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and base.is_file(), r.stderr
    r = subprocess.run([*script, "--kl-divergence-base", str(base), "--kl-divergence"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0 and "Same top token = 100.000" in r.stdout, r.stderr
