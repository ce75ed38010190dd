"""Tests of utils/train_tiny_model.py on a micro configuration (seconds, not minutes).

The training module must compute what transformers' BitNetForCausalLM computes on the exported
offline checkpoint (the engine's reference), so the held-out loss is recomputed here with
transformers, independently of the script, from the files it wrote (tokenizer.json, heldout.txt).
"""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # transformers' BitLinear is @torch.compile'd

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from utils.train_tiny_model import main  # noqa: E402

MICRO = ["--hidden=128", "--layers=2", "--heads=2", "--kv-heads=1", "--ffn=256", "--vocab=512", "--ctx=64",
         "--batch=8", "--warmup=5", "--lr=1e-2", "--no-compile", "--threads=2"]
STEPS = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "micro"
    res = CliRunner().invoke(main, ["-o", str(out), f"--steps={STEPS}", *MICRO])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout.strip().splitlines()[-1])


def test_files_and_config(trained):
    out, stats = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "README.md", "heldout.txt"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "bitnet" and cfg["hidden_act"] == "relu2" and cfg["tie_word_embeddings"]
    assert cfg["quantization_config"]["quantization_mode"] == "offline"
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]) == (128, 256, 512)
    assert stats["steps"] == STEPS
    assert f"--steps={STEPS}" in (out / "README.md").read_text()


def test_transformers_matches_module_and_loss_decreased(trained):
    """transformers on the export: same held-out loss as the training module, and far below the
    loss of an untrained model (ln vocab = 6.24 nats; 40 steps reach about 5.3)."""
    from tokenizers import Tokenizer
    from transformers import BitNetForCausalLM
    from transformers.integrations.bitnet import BitLinear

    out, stats = trained
    model = BitNetForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert isinstance(model.model.layers[0].mlp.down_proj, BitLinear)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eos = tok.token_to_id("<|end_of_text|>")
    ids = []
    for doc in (out / "heldout.txt").read_text(encoding="utf-8").split("\n\n")[:40]:
        ids += tok.encode(doc.strip(), add_special_tokens=True).ids + [eos]
    n = (len(ids) - 1) // 64
    windows = torch.tensor([ids[i * 64: i * 64 + 65] for i in range(n)])
    with torch.no_grad():
        logits = model(windows[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 512), windows[:, 1:].reshape(-1)).item()
    print(f"\nheld-out loss: script {stats['heldout_ours']:.4f} (module) / {stats['heldout_hf']:.4f} "
          f"(transformers); this test on {n} windows {loss:.4f}; untrained {math.log(512):.2f}")
    assert abs(stats["heldout_ours"] - stats["heldout_hf"]) < 1e-3 * stats["heldout_ours"]
    assert loss < math.log(512) - 0.5, "training did not lower the loss"
    assert abs(loss - stats["heldout_hf"]) < 0.5  # a subset of the same held-out text
