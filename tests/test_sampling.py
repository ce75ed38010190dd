"""The sampler of the C API against first principles: greedy is numpy's argmax, a seed fixes the
draws, the cut-offs (top-k, top-p, min-p) keep exactly the tokens they should, the repetition
penalty moves the right logits, and the draws follow softmax(logits / T)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _lib(engine_lib):
    return engine_lib


def draws(logits, n, **kw):
    from bitnet.bindings import Sampler

    s = Sampler(**kw)
    return np.array([s.sample(logits) for _ in range(n)])


def test_greedy_is_argmax_first_index():
    rng = np.random.default_rng(0)
    for _ in range(50):
        logits = rng.normal(size=1000).astype(np.float32)
        assert draws(logits, 1, temperature=0)[0] == int(np.argmax(logits))
    tied = np.array([0.0, 3.0, 1.0, 3.0], dtype=np.float32)
    assert draws(tied, 1, temperature=0)[0] == 1  # first of equal maxima, as torch.argmax


def test_seed_fixes_the_draws_and_differs_between_seeds():
    logits = np.random.default_rng(1).normal(size=500).astype(np.float32)
    a = draws(logits, 64, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    b = draws(logits, 64, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    c = draws(logits, 64, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=8)
    assert (a == b).all() and (a != c).any()


def test_cutoffs_keep_the_right_tokens():
    logits = np.log(np.array([0.4, 0.3, 0.15, 0.1, 0.05], dtype=np.float32))
    free = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=3)
    assert set(draws(logits, 400, **{**free, "top_k": 2})) == {0, 1}
    # top-p 0.8: 0.4 + 0.3 + 0.15 = 0.85 is the first prefix reaching 0.8
    assert set(draws(logits, 600, **{**free, "top_p": 0.8})) == {0, 1, 2}
    # min-p 0.3: keep p >= 0.3 * 0.4 = 0.12
    assert set(draws(logits, 600, **{**free, "min_p": 0.3})) == {0, 1, 2}
    assert set(draws(logits, 50, **{**free, "top_k": 1})) == {0}


def test_draws_follow_softmax_with_temperature():
    logits = np.array([2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    for temp in (0.5, 1.0, 2.0):
        n = 20000
        got = np.bincount(draws(logits, n, temperature=temp, top_k=0, top_p=1.0, min_p=0.0, seed=11),
                          minlength=4) / n
        p = np.exp(logits / temp)
        p /= p.sum()
        # 5 standard deviations of a binomial proportion: fails only for a real bias
        assert np.all(np.abs(got - p) <= 5 * np.sqrt(p * (1 - p) / n)), (temp, got, p)


def test_repetition_penalty_demotes_seen_tokens():
    from bitnet.bindings import Sampler

    logits = np.array([3.0, 2.9, -1.0], dtype=np.float32)
    s = Sampler(temperature=0, repeat_penalty=1.5, repeat_last_n=8)
    assert s.sample(logits) == 0
    s.accept(0)  # 3.0 / 1.5 = 2.0 < 2.9
    assert s.sample(logits) == 1


def test_presence_and_frequency_penalties_subtract_counts():
    from bitnet.bindings import Sampler

    # OpenAI's rule: logit - count * frequency - (count > 0) * presence, over the recent window.
    logits = np.array([3.0, 2.5, 2.2, -1.0], dtype=np.float32)
    s = Sampler(temperature=0, presence_penalty=0.4, repeat_last_n=8)
    s.accept(0)  # 3.0 - 0.4 = 2.6 still beats 2.5
    assert s.sample(logits) == 0
    s.accept(0)  # presence does not grow with the count
    assert s.sample(logits) == 0
    f = Sampler(temperature=0, frequency_penalty=0.3, repeat_last_n=8)
    f.accept(0)  # 2.7
    assert f.sample(logits) == 0
    f.accept(0)  # 2.4 < 2.5
    assert f.sample(logits) == 1
    w = Sampler(temperature=0, frequency_penalty=0.3, repeat_last_n=1)
    w.accept(0), w.accept(1)  # only the last token is in the window: token 1 pays, 0 does not
    assert w.sample(logits) == 0


def test_logit_bias_moves_and_bans_tokens():
    from bitnet.bindings import Sampler
    from bitnet.errors import BitnetError

    logits = np.array([3.0, 2.5, 2.2, -1.0], dtype=np.float32)
    assert Sampler(temperature=0, logit_bias={3: 5.0}).sample(logits) == 3
    banned = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=5,
                     logit_bias={0: float("-inf"), 1: float("-inf")})
    assert {banned.sample(logits) for _ in range(300)} == {2, 3}
    s = Sampler(temperature=0, logit_bias={0: -10.0})
    assert s.sample(logits) == 1
    s.set_logit_bias({})  # cleared
    assert s.sample(logits) == 0
    with pytest.raises(BitnetError, match="below \\+inf"):
        Sampler(logit_bias={1: float("nan")})
    with pytest.raises(BitnetError, match="finite"):
        Sampler(presence_penalty=float("inf"))
