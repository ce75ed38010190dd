"""bitnet-perplexity (through utils/perplexity.py) against an independent reference: the perplexity
of the same tiny checkpoint computed here with transformers' float32 BitNetForCausalLM on the same
tokens (Hugging Face tokenizers), with the same protocol written out in numpy: chunks of C tokens,
BOS in place of each chunk's first token, a fresh cache per chunk, the tokens at positions
C/2+1 .. C-1 scored from the logits before them.

The reference runs eager attention on one thread: its products are MKL matrix products whose
summation order the engine reproduces (src/ops/ops.cpp), and every other float op too, except the
RoPE table: torch takes cos/sin from MKL's vector math library, whose results differ from the C
library's in ~5% of the values by one ulp. Where such an ulp meets a rounding tie of the int8
activation quantizer, one int8 value flips and the logits move by ~1e-3 of their scale.

Tolerance. Against the stock reference, the mean NLL over the ~90 scored tokens must agree to 5e-5,
i.e. the PPL to 4 significant digits (|Δ|/PPL < 5e-5). With the reference's cos/sin taken from the
C library as the engine does (``engine_rope``), nothing else differs: the PPL must agree to 1e-6
(only the float output layer, summed in another order, remains). The dummy model's PPL is huge
(random weights), which does not matter for agreement.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from conftest import EXACT_ATTN_FLAGS  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

CTX = 64
CHUNKS = 3
REL_TOL = 5e-5
EXACT_REL_TOL = 1e-6


@contextlib.contextmanager
def engine_rope():
    """Within the block, transformers' BitNet rotary embedding takes cos/sin of its float32 angles
    from the C library (cosf/sinf), as the engine does, instead of MKL's vector math: the one float
    op of the reference the engine cannot reproduce, replaced so that tests can check the rest to
    the bit. The angles themselves are computed exactly as transformers does."""
    from transformers.models.bitnet import modeling_bitnet

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    fns = []
    for name in ("cosf", "sinf"):
        f = getattr(libm, name)
        f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
        fns.append(np.vectorize(lambda a, f=f: f(float(a)), otypes=[np.float32]))
    cosf, sinf = fns

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1).numpy()
        return torch.from_numpy(cosf(emb)).to(x.dtype), torch.from_numpy(sinf(emb)).to(x.dtype)

    original = modeling_bitnet.BitNetRotaryEmbedding.forward
    modeling_bitnet.BitNetRotaryEmbedding.forward = forward
    try:
        yield
    finally:
        modeling_bitnet.BitNetRotaryEmbedding.forward = original


def _text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ("the of and to in is was he for it with as his on be at by had are but from or have an they "
             "which one you were her all she there would their we him been has when who will more no if "
             "out so said what up its about into than them can only other new some could time these two "
             "may then do first any my now such like our over man me even most made after also did many").split()
    lines = [" ".join(rng.choice(words) for _ in range(12)).capitalize() + "." for _ in range(n_words // 12)]
    return "\n".join(lines) + "\n"


def reference_ppl(ckpt, ids: list[int], n_ctx: int, n_chunks: int) -> tuple[float, float, int]:
    """(PPL, +/-, tokens scored) of the float32 transformers model (eager attention, one thread)
    under llama-perplexity's protocol."""
    from transformers import BitNetForCausalLM

    torch.set_num_threads(1)
    model = BitNetForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager").eval()
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
    # Chunks in batches of 24 tokens: below 192 keys MKL sums every product in one chain, so the
    # engine's batching does not change its sums (see attention_head).
    got, got_pm = perplexity(tiny_gguf, text_file, ctx_size=CTX, threads=2, batch_size=24, chunks=CHUNKS, cache_flags=EXACT_ATTN_FLAGS)
    want, want_pm, n_scored = reference_ppl(tiny_packed, ids, CTX, CHUNKS)
    with engine_rope():
        exact, exact_pm, _ = reference_ppl(tiny_packed, ids, CTX, CHUNKS)
    rel, rel_exact = abs(got - want) / want, abs(got - exact) / exact
    print(f"\nPPL engine {got:.4f} +/- {got_pm:.5f}, transformers {want:.4f} +/- {want_pm:.5f}, with the "
          f"engine's cos/sin {exact:.4f} ({n_scored} tokens scored): |Δ|/PPL = {rel:.1e}, {rel_exact:.1e}")
    assert rel < REL_TOL, f"engine PPL {got} vs transformers {want}: relative difference {rel:.2e}"
    assert abs(got_pm - want_pm) / want_pm < 1e-3
    assert rel_exact < EXACT_REL_TOL, f"engine PPL {got} vs transformers with libm RoPE {exact}: {rel_exact:.2e}"
    assert abs(got_pm - exact_pm) / exact_pm < 1e-5


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
    from bitnet.common import BitnetError
    from utils.perplexity import perplexity

    short = tmp_path / "short.txt"
    short.write_text("Only a few words here.", encoding="utf-8")
    with pytest.raises(BitnetError, match=r"has \d+ tokens, fewer than one chunk of -c 512: use -c \d+ or less"):
        perplexity(tiny_gguf, short, ctx_size=512)


def test_missing_files(engine_bin, tiny_gguf, tmp_path):
    from bitnet.common import BitnetError
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


def test_script_context_rule(engine_lib, shipped_gguf):
    # The shipped model is trained on 256 tokens: the script's default -c 0 is that context, without
    # a word (it used to be 512, warned about); -c 512 is scored and warned about once.
    from bitnet.common import DEFAULT_MODEL_DIR

    script = ROOT / "utils" / "perplexity.py"
    text = DEFAULT_MODEL_DIR / "heldout.txt"
    r = subprocess.run([sys.executable, script, "-m", shipped_gguf, "-f", text, "--chunks", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Final estimate" in r.stdout, r.stderr
    assert "warning" not in r.stderr and "note: context" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, script, "-m", shipped_gguf, "-f", text, "--chunks", "1", "-c", "512",
                        "--no-mmap"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Final estimate" in r.stdout, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning")]
    assert warnings == ["warning: a context of 512 tokens is longer than the 256 the model was trained on; "
                        "text past 256 tokens may lose coherence"], r.stderr
