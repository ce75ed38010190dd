"""Certified output (src/model/output_cert.cpp): a context that scores the output through a compact
copy of the exact F16 matrix must choose exactly the tokens the exact output chooses, greedy and
top-k, and the per-row bound it relies on must hold at every step (BITNET_CERT_CHECK=1 checks
every bound, every rescored bit and the top-k set inside the engine, and fails the decode
otherwise). The models are small, so every test asks for its compact type explicitly: auto leaves
output matrices under 32 MiB exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import convert_to

ROOT = Path(__file__).resolve().parent.parent

# A subprocess, because the engine reads BITNET_CERT_CHECK once per process.
_CHECK_SCRIPT = r"""
import json, sys
import numpy as np
from bitnet.bindings import Context, Model
gguf, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = Model(gguf)
exact = Context(m, n_ctx=n + 1, n_threads=2, exact_output=True)
cert = Context(m, n_ctx=n + 1, n_threads=2, certified_top_k=k)
toks = [int(t) for t in np.random.default_rng(k).integers(0, m.n_vocab, n)]
le, lc = exact.decode(toks, logits_all=True), cert.decode(toks, logits_all=True)
top = lambda l: [sorted(np.argsort(-r, kind="stable")[:k].tolist()) for r in l]
print(json.dumps({"compact": m.output_compact, "same_top": top(le) == top(lc),
                  "same_bits": bool(all(np.array_equal(le[i][t], lc[i][t]) for i, t in enumerate(top(le)))),
                  "stats": cert.output_stats()}))
"""


def _checked_run(gguf: Path, compact: str, k: int, n: int = 24) -> dict:
    env = dict(os.environ, BITNET_CERT_CHECK="1", BITNET_OUTPUT_COMPACT=compact, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", _CHECK_SCRIPT, str(gguf), str(k), str(n)], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _model(root: Path, seed: int, hidden: int, margin: str) -> Path:
    """A random checkpoint whose tied embedding gives large margins (rows scaled up: peaky logits)
    or tiny ones (rows 1..32 copies of row 0 but for one bf16 ulp in one value: near ties)."""
    import torch
    from safetensors.torch import load_file, save_file
    from utils.generate_dummy_model import generate

    ck = root / f"ck-{seed}-{hidden}-{margin}"
    generate(ck, preset="tiny", seed=seed, fmt="packed", hidden=hidden)
    path = ck / "model.safetensors"
    w = load_file(str(path))
    e = w["model.embed_tokens.weight"].float()
    if margin == "large":
        e = e * 8
    else:
        for r in range(1, 33):
            e[r] = e[0]
            e[r, r] = torch.nextafter(e[0, r].bfloat16(), torch.tensor(1e9, dtype=torch.bfloat16)).float()
    w["model.embed_tokens.weight"] = e.to(w["model.embed_tokens.weight"].dtype)
    save_file(w, str(path))
    return convert_to(ck, "i2_s")


@pytest.mark.parametrize("compact,hidden", [("q6_k", 256), ("q4_0", 256), ("q8_0", 192), ("q4_0", 192)])
@pytest.mark.parametrize("margin", ["large", "tiny"])
@pytest.mark.parametrize("k", [1, 8])
def test_bound_holds_every_step(engine_lib, tmp_path_factory, compact, hidden, margin, k):
    gguf = _model(tmp_path_factory.mktemp("cert"), seed=hidden + k, hidden=hidden, margin=margin)
    r = _checked_run(gguf, compact, k)
    assert r["compact"] == compact.upper()
    assert r["same_top"] and r["same_bits"]
    tokens, rescored = r["stats"]
    assert tokens == 24 and k * tokens <= rescored


@pytest.fixture(scope="module")
def shipped_f16(tmp_path_factory) -> Path:
    from bitnet.common import DEFAULT_MODEL_DIR
    from bitnet.convert.hf import convert

    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"{DEFAULT_MODEL_DIR} is not in the checkout")
    return convert(DEFAULT_MODEL_DIR, tmp_path_factory.mktemp("shipped") / "f16.gguf", embd_type="f16")


@pytest.mark.parametrize("compact", ["q4_0", "q8_0"])
def test_lossless_prompts_greedy(engine_lib, shipped_f16, compact):
    """The lossless protocol's prompts (a prefix of the 200; README gives the full run)."""
    from utils.certified_check import certified_check

    r = certified_check(shipped_f16, compact, n_prompts=6, n_predict=40)
    assert r.compact == compact.upper()
    assert r.identical == r.prompts == 6, r.first_difference


def test_top_k_sampling_same_draws(engine_lib, shipped_f16):
    from utils.certified_check import certified_check

    r = certified_check(shipped_f16, "q4_0", n_prompts=4, n_predict=40, top_k=20)
    assert r.identical == r.prompts == 4, r.first_difference


def test_exact_output_and_auto(engine_lib, shipped_f16, monkeypatch):
    """auto leaves a small output matrix exact; exact_output bypasses the copy; bad names fail."""
    from bitnet.bindings import Context, Model
    from bitnet.errors import BitnetError

    monkeypatch.delenv("BITNET_OUTPUT_COMPACT", raising=False)
    assert Model(shipped_f16).output_compact is None
    monkeypatch.setenv("BITNET_OUTPUT_COMPACT", "q4_0")
    m = Model(shipped_f16)
    ctx = Context(m, n_ctx=16, exact_output=True)
    ctx.decode([1, 2, 3])
    assert ctx.output_stats() == (0, 0)
    monkeypatch.setenv("BITNET_OUTPUT_COMPACT", "q5_1")
    with pytest.raises(BitnetError, match="BITNET_OUTPUT_COMPACT"):
        Model(shipped_f16)
    monkeypatch.setenv("BITNET_OUTPUT_COMPACT", "q6_k")  # rows of 384: not whole Q6_K blocks
    with pytest.raises(BitnetError, match="multiple of 256"):
        Model(shipped_f16)
