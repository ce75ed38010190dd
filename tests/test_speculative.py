"""Speculative decoding: greedy output with speculation is token for token the output without it
(bitnet-cli, both drafters, i2_s and tl2 files, one and two threads, prompts that copy from
themselves and prompts that do not), the acceptance rule keeps the sampled distribution (the C++
chi-square test), and the flags fail cleanly on bad input.

The draft models: the target itself (which must keep every guess) and another checkpoint with the
same tokenizer (which keeps some and loses some, so rejection and the KV cache truncation that
follows are exercised).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import convert_to

PROMPTS = [
    'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n\ndef add(a, b):',
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Once upon a time",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
]


def cli(engine_bin, model, prompt, *extra, n=48):
    r = subprocess.run([engine_bin / "bitnet-cli", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0",
                        "--ignore-eos", "--no-display-prompt", *map(str, extra)],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout, r.stderr.decode(errors="replace")


def spec_stats(err: str) -> tuple[int, int, int]:
    m = re.search(r"speculation: (\d+) drafted, (\d+) accepted .*?, (\d+) forward passes", err)
    assert m, err
    return int(m[1]), int(m[2]), int(m[3])


@pytest.fixture(scope="module")
def targets(shipped_gguf, tiny_packed):
    return {"shipped-i2_s": shipped_gguf, "tiny-i2_s": convert_to(tiny_packed, "i2_s"),
            "tiny-tl2": convert_to(tiny_packed, "tl2")}


@pytest.fixture(scope="module")
def other_draft(tiny_bf16):
    """Another tiny checkpoint (other seed and weights, same tokenizer) as a draft for tiny files."""
    return convert_to(tiny_bf16, "i2_s")


def test_acceptance_rule_chi_square(engine_bin):
    r = subprocess.run([engine_bin / "test_spec"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all passed" in r.stdout


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", ["shipped-i2_s", "tiny-i2_s", "tiny-tl2"])
def test_greedy_identical_with_speculation(engine_bin, targets, other_draft, target, threads):
    model = targets[target]
    drafters = {"ngram": ["--spec", "ngram"], "self": ["-md", model, "--draft-p-min", "0"],
                "ngram-1": ["--spec", "ngram", "--spec-ngram-min", "1", "--draft-max", "5"]}
    if target.startswith("tiny"):
        drafters["other"] = ["-md", other_draft, "--draft-p-min", "0", "--draft-max", "4"]
    totals = {}
    for prompt in PROMPTS:
        want, _ = cli(engine_bin, model, prompt, "-t", threads)
        for name, flags in drafters.items():
            got, err = cli(engine_bin, model, prompt, "-t", threads, *flags)
            assert got == want, f"{name} on {prompt!r}:\n{got!r}\n!=\n{want!r}"
            d, a, steps = spec_stats(err)
            t = totals.setdefault(name, [0, 0, 0])
            t[0] += d; t[1] += a; t[2] += steps
    # The target as its own draft keeps every guess; n-gram lookup finds something to guess on
    # prompts that repeat themselves; another model is right sometimes and wrong sometimes.
    assert totals["self"][0] > 0 and totals["self"][1] == totals["self"][0], totals
    assert totals["ngram"][0] > 0, totals
    if "other" in totals:
        assert 0 < totals["other"][1] < totals["other"][0], totals


def test_speculation_respects_n_predict_and_context(engine_bin, targets):
    model = targets["shipped-i2_s"]
    for n in (1, 2, 7):
        want, _ = cli(engine_bin, model, PROMPTS[1], "-t", 1, n=n)
        got, _ = cli(engine_bin, model, PROMPTS[1], "-t", 1, "-md", model, "--draft-p-min", "0", n=n)
        assert got == want
    # A context a few tokens longer than the prompt: the draft must shrink to what fits.
    want, _ = cli(engine_bin, model, PROMPTS[1], "-t", 1, "-c", 36, n=-1)
    got, _ = cli(engine_bin, model, PROMPTS[1], "-t", 1, "-c", 36, "-md", model, "--draft-p-min", "0", n=-1)
    assert got == want


def test_speculation_with_sampling_runs(engine_bin, targets):
    model = targets["shipped-i2_s"]
    for flags in (["--spec", "ngram"], ["-md", model, "--draft-p-min", "0"]):
        r = subprocess.run([engine_bin / "bitnet-cli", "-m", model, "-p", PROMPTS[0], "-n", "40", "--temp", "0.7",
                            "-s", "5", "--ignore-eos", *map(str, flags)], capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert spec_stats(r.stderr.decode())[0] > 0


@pytest.mark.parametrize("flags, message", [
    (["--spec", "fast"], "--spec must be off, ngram or draft"),
    (["--spec", "draft"], "needs a draft model"),
    (["--spec", "ngram", "--spec-ngram-min", "3", "--spec-ngram-max", "2"], "n-gram sizes"),
    (["--spec", "ngram", "--draft-min", "5", "--draft-max", "2"], "--draft-min <= --draft-max"),
])
def test_bad_speculation_flags(engine_bin, targets, flags, message):
    r = subprocess.run([engine_bin / "bitnet-cli", "-m", targets["tiny-i2_s"], "-p", "x", *flags],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_draft_model_with_another_vocabulary_is_refused(engine_bin, targets):
    r = subprocess.run([engine_bin / "bitnet-cli", "-m", targets["shipped-i2_s"], "-p", "x",
                        "-md", targets["tiny-i2_s"]], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "same tokenizer" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_run_inference_passes_speculation_flags(engine_bin, targets):
    import os
    import sys

    from conftest import ROOT

    model = targets["shipped-i2_s"]
    env = {**os.environ, "BITNET_BUILD_DIR": str(engine_bin.parent)}
    base = ["-m", str(model), "-p", PROMPTS[0], "-n", "32", "-t", "1", "-temp", "0"]
    plain = subprocess.run([sys.executable, ROOT / "run_inference.py", *base], env=env, capture_output=True,
                           text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    for flags in (["--spec", "ngram", "--spec-ngram-min", "1", "--spec-ngram-max", "3", "--draft-max", "6"],
                  ["-md", str(model), "--draft-p-min", "0", "--draft-min", "1"]):
        res = subprocess.run([sys.executable, ROOT / "run_inference.py", *base, *flags], env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert res.stdout == plain.stdout
        assert spec_stats(res.stderr)[0] > 0
    res = subprocess.run([sys.executable, ROOT / "run_inference.py", *base, "-cnv", "--spec", "ngram"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "not yet to -cnv" in res.stderr


def test_bindings_speculator(engine_lib, targets, other_draft):
    from bitnet import bindings
    from bitnet.errors import BitnetError

    with bindings.Model(targets["tiny-i2_s"]) as model, bindings.Model(other_draft) as draft:
        prompt = model.tokenize(PROMPTS[1], add_bos=True)
        with bindings.Context(model, n_ctx=256, n_threads=1) as ctx:
            want = ctx.generate_greedy(prompt, 40)
        for kwargs in ({"mode": "ngram"}, {"mode": "draft", "draft_model": draft, "draft_p_min": 0.0},
                       {"mode": "replay", "replay": prompt + want, "replay_error": 0.0}):
            with bindings.Context(model, n_ctx=256, n_threads=1) as ctx, bindings.Sampler(temperature=0) as smp:
                spec = bindings.Speculator(model, ctx, smp, draft_max=6, **kwargs)
                logits = ctx.decode(prompt)
                hist = prompt + [smp.sample(logits[-1])]
                while len(hist) - len(prompt) < 40:
                    hist += spec.step(ctx, smp, hist, n_max=40 - (len(hist) - len(prompt)))
                assert hist[len(prompt):] == want, kwargs
                st = spec.stats
                assert st["generated"] == 39 and st["accepted"] <= st["drafted"]
                if kwargs["mode"] == "replay":
                    assert st["accepted"] == st["drafted"] > 0
                spec.close()
    with bindings.Model(targets["shipped-i2_s"]) as big, bindings.Model(targets["tiny-i2_s"]) as small, \
            bindings.Context(big, n_ctx=64, n_threads=1) as ctx, bindings.Sampler() as smp:
        with pytest.raises(BitnetError, match="same tokenizer"):
            bindings.Speculator(big, ctx, smp, mode="draft", draft_model=small)


def test_package_and_scheduler_speculation(engine_lib, shipped_gguf):
    """BitNetModel(speculative="ngram"): greedy texts equal those without speculation, one at a
    time and as concurrent streams of continuous batching (the slots' drafts verified in one step),
    with max_new_tokens and a short context honoured; the scheduler counts drafted and kept tokens."""
    from bitnet import BitNetModel

    prompts = [*PROMPTS, "Return the value of the", "Close the file. Close the"]
    with BitNetModel(shipped_gguf, n_threads=1, context_length=96) as plain:
        want = [plain.generate(p, max_new_tokens=40) for p in prompts]
        want_long = [plain.generate(p, max_new_tokens=None) for p in prompts[:2]]
    with BitNetModel(shipped_gguf, n_threads=1, context_length=96, n_parallel=3, speculative="ngram",
                     speculative_options={"draft_max": 6}) as spec:
        assert [spec.generate(p, max_new_tokens=40) for p in prompts] == want
        assert spec.batch_generate(prompts, max_new_tokens=40, batch_size=3) == want
        assert [spec.generate(p, max_new_tokens=None) for p in prompts[:2]] == want_long
        s = spec._scheduler.stats()
        assert 0 < s.spec_accepted_total <= s.spec_drafted_total, s


def _server_text(url: str, prompt: str) -> str:
    from utils.load_test import request

    status, body = request(url, "POST", "/v1/completions",
                           {"prompt": prompt, "max_tokens": 40, "temperature": 0})
    assert status == 200, body
    return body["choices"][0]["text"]


def _metric(url: str, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    m = re.search(rf"^\S*{name} (\S+)$", text, re.M)
    assert m, text
    return float(m[1])


@pytest.mark.parametrize("spec", [["--spec", "ngram"], ["-md", "self"]])
def test_server_speculation_same_greedy_text(engine_lib, targets, spec):
    """run_inference_server.py --spec: the same greedy texts as without it, and guesses were
    verified (a draft model equal to the target keeps every one of them)."""
    from utils.load_test import local_server

    model = targets["shipped-i2_s"]
    spec = [str(model) if a == "self" else a for a in spec]
    prompts = [PROMPTS[0], PROMPTS[3]]
    with local_server(model, ["-t", "1", "-np", "1"]) as url:
        plain = [_server_text(url, p) for p in prompts]
    with local_server(model, ["-t", "1", "-np", "1", *spec]) as url:
        assert [_server_text(url, p) for p in prompts] == plain
        drafted = _metric(url, "spec_drafted_tokens_total")
        accepted = _metric(url, "spec_accepted_tokens_total")
    assert drafted > 0
    if "-md" in spec:
        assert accepted == drafted


@pytest.mark.parametrize("flags, message", [
    (["--spec", "draft"], "needs a draft model"),
    (["--spec", "ngram", "-md", "x.gguf"], "-md is the draft model of --spec draft"),
    (["--spec", "ngram", "--spec-ngram-min", "3", "--spec-ngram-max", "2"], "n-gram sizes"),
    (["--spec", "draft", "-md", "missing.gguf"], "draft model file missing.gguf not found"),
    (["--spec", "draft", "-md", "tiny"], "same tokenizer"),
])
def test_server_bad_speculation_flags(engine_lib, targets, flags, message):
    import sys

    import gguf_craft as gc
    from bitnet.common import REPO_ROOT
    from utils.load_test import free_port

    flags = [str(targets["tiny-i2_s"]) if a == "tiny" else a for a in flags]
    r = subprocess.run([sys.executable, str(REPO_ROOT / "run_inference_server.py"), "-m",
                        str(targets["shipped-i2_s"]), "-t", "1", "--port", str(free_port()), *flags],
                       capture_output=True, text=True, timeout=120)
    gc.assert_one_line_error(r, message)
