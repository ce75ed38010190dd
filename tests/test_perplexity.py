"""bitnet-perplexity (through utils/perplexity.py) against an independent reference: the perplexity
of the same tiny checkpoint computed here with transformers' float32 BitNetForCausalLM on the same
tokens (Hugging Face tokenizers), with the same protocol written out in numpy: chunks of C tokens,
BOS in place of each chunk's first token, a fresh cache per chunk, the tokens at positions
C/2+1 .. C-1 scored from the logits before them.

Tolerance. The logits agree to ~1e-6 of their scale except where the int8 activation quantizer
rounds a near-tie differently (see test_engine_reference.py); averaged over the ~90 scored tokens,
the mean NLL must agree to 5e-5, i.e. the PPL to 4 significant digits (|Δ|/PPL < 5e-5). The dummy
model's PPL is huge (random weights), which does not matter for agreement.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

CTX = 64
CHUNKS = 3
REL_TOL = 5e-5


def _text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ("the of and to in is was he for it with as his on be at by had are but from or have an they "
             "which one you were her all she there would their we him been has when who will more no if "
             "out so said what up its about into than them can only other new some could time these two "
             "may then do first any my now such like our over man me even most made after also did many").split()
    lines = [" ".join(rng.choice(words) for _ in range(12)).capitalize() + "." for _ in range(n_words // 12)]
    return "\n".join(lines) + "\n"


def reference_ppl(ckpt, ids: list[int], n_ctx: int, n_chunks: int) -> tuple[float, float, int]:
    """(PPL, +/-, tokens scored) of the float32 transformers model under llama-perplexity's protocol."""
    from transformers import BitNetForCausalLM

    torch.set_num_threads(1)
    model = BitNetForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    bos = json.loads((ckpt / "config.json").read_text())["bos_token_id"]
    first = n_ctx // 2
    nlls = []
    for i in range(n_chunks):
        chunk = list(ids[i * n_ctx:(i + 1) * n_ctx])
        chunk[0] = bos
        with torch.no_grad():
            logits = model(torch.tensor([chunk])).logits[0].double().numpy()
        for j in range(first, n_ctx - 1):
            row = logits[j]
            mx = row.max()
            nlls.append(np.log(np.exp(row - mx).sum()) + mx - row[chunk[j + 1]])
    nll = np.array(nlls)
    ppl = float(np.exp(nll.mean()))
    return ppl, ppl * float(nll.std() / np.sqrt(len(nll) - 1)), len(nll)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppl") / "text.txt"
    path.write_text(_text(400), encoding="utf-8")
    return path


def test_ppl_matches_transformers(engine_lib, tiny_packed, tiny_gguf, text_file):
    from tokenizers import Tokenizer

    from utils.perplexity import perplexity

    ids = Tokenizer.from_file(str(tiny_packed / "tokenizer.json")).encode(
        text_file.read_text(encoding="utf-8"), add_special_tokens=True).ids
    assert len(ids) >= CHUNKS * CTX + 10, "test text too short for the chunks it wants"
    want, want_pm, n_scored = reference_ppl(tiny_packed, ids, CTX, CHUNKS)
    got, got_pm = perplexity(tiny_gguf, text_file, ctx_size=CTX, threads=2, batch_size=24, chunks=CHUNKS)
    rel = abs(got - want) / want
    print(f"\nPPL engine {got:.4f} +/- {got_pm:.5f}, transformers {want:.4f} +/- {want_pm:.5f} "
          f"({n_scored} tokens scored): |Δ|/PPL = {rel:.1e}")
    assert rel < REL_TOL, f"engine PPL {got} vs transformers {want}: relative difference {rel:.2e}"
    assert abs(got_pm - want_pm) / want_pm < 1e-3


def test_tool_reports_progress_and_counts(engine_bin, tiny_packed, tiny_gguf, text_file):
    """One running estimate per chunk, the token count the reference tokenizer gives, a speed."""
    from tokenizers import Tokenizer

    n_tokens = len(Tokenizer.from_file(str(tiny_packed / "tokenizer.json")).encode(
        text_file.read_text(encoding="utf-8"), add_special_tokens=True).ids)
    r = subprocess.run([engine_bin / "bitnet-perplexity", "-m", tiny_gguf, "-f", text_file, "-c", str(CTX),
                        "--chunks", "2", "-t", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("[1]") and "[2]" in lines[0] and "[3]" not in lines[0]
    assert lines[-1].startswith("Final estimate: PPL = ")
    assert f"{n_tokens} tokens: 2 chunks of {CTX}" in r.stderr
    assert f"scored {2 * (CTX - 1 - CTX // 2)} tokens" in r.stderr and "tokens/s" in r.stderr


def test_text_too_short_names_the_count(engine_lib, tiny_gguf, tmp_path):
    from utils.common import BitnetError
    from utils.perplexity import perplexity

    short = tmp_path / "short.txt"
    short.write_text("Only a few words here.", encoding="utf-8")
    with pytest.raises(BitnetError, match=r"has \d+ tokens, fewer than one chunk of -c 512: use -c \d+ or less"):
        perplexity(tiny_gguf, short, ctx_size=512)


def test_missing_files(engine_bin, tiny_gguf, tmp_path):
    from utils.common import BitnetError
    from utils.perplexity import perplexity

    with pytest.raises(BitnetError, match="text file .*nope.txt not found"):
        perplexity(tiny_gguf, tmp_path / "nope.txt")
    # the tool itself, without the wrapper's check: one line, exit code 1
    r = subprocess.run([engine_bin / "bitnet-perplexity", "-m", tiny_gguf, "-f", tmp_path / "nope.txt"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: cannot open text file") and r.stderr.count("\n") == 1


def test_script_end_to_end(engine_lib, tiny_gguf, text_file, tmp_path):
    """python utils/perplexity.py: the tool's output comes through; errors are one line, exit 1."""
    script = ROOT / "utils" / "perplexity.py"
    r = subprocess.run([sys.executable, script, "-m", tiny_gguf, "-f", text_file, "-c", "32", "--chunks", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Final estimate: PPL = " in r.stdout
    r = subprocess.run([sys.executable, script, "-m", tmp_path / "missing.gguf", "-f", text_file],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error: model file") and "not found" in r.stderr
