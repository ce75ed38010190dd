"""Certified output against the exact output, on the prompts of the lossless protocol: every greedy
token of a certified context must be the exact context's, and so must every top-k draw.

    python utils/certified_check.py --gguf F16.gguf [--compact q4_0] [-N 200] [--n-predict 100]
                                    [--top-k 0] [--text FILE] [-t 2]

Prompts are drawn as utils/lossless_check.py draws them (windows of --prompt-tokens tokens of the
held-out text at seeded offsets, BOS first), tokenized by the engine. One model, two contexts: one
with exact_output (every logit from the F16 matrix) and one certified through the compact copy
made at load time (BITNET_OUTPUT_COMPACT=--compact). Both generate --n-predict tokens, greedy, or
with --top-k K sampled (temperature 0.8, top-k K, no top-p/min-p, fixed seed; the certified
context certifies the top K). Reports identical sequences and rescored rows per token; the exit
code is 1 when any token differs.
"""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import DEFAULT_MODEL_DIR, run_cli  # noqa: E402


@dataclass
class CertResult:
    compact: str
    prompts: int = 0
    identical: int = 0
    tokens: int = 0
    rescored: list[int] = field(default_factory=list)  # per generated token
    first_difference: tuple[int, int] | None = None     # (prompt, step)


def _generate(ctx, sampler, prompt: list[int], n: int, stats: list[int] | None) -> list[int]:
    ctx.truncate(0)
    logits = ctx.decode(prompt)[-1]
    out = []
    for _ in range(n):
        t = int(np.argmax(logits)) if sampler is None else sampler.sample(logits)
        out.append(t)
        before = ctx.output_stats()[1]
        logits = ctx.decode([t])[-1]
        if stats is not None:
            stats.append(ctx.output_stats()[1] - before)
    return out


def certified_check(gguf: str | Path, compact: str = "q4_0", n_prompts: int = 200, n_predict: int = 100,
                    prompt_tokens: int = 32, top_k: int = 0, text: str | Path | None = None, threads: int = 2,
                    seed: int = 0) -> CertResult:
    """Runs the check (see the module docstring). The compact type is chosen through the environment
    before the model loads; the caller's BITNET_OUTPUT_COMPACT is restored afterwards."""
    from bitnet.bindings import Context, Model, Sampler
    from utils.lossless_check import draw_prompts

    old = os.environ.get("BITNET_OUTPUT_COMPACT")
    os.environ["BITNET_OUTPUT_COMPACT"] = compact
    try:
        model = Model(gguf)
    finally:
        if old is None:
            os.environ.pop("BITNET_OUTPUT_COMPACT")
        else:
            os.environ["BITNET_OUTPUT_COMPACT"] = old
    res = CertResult(compact=model.output_compact or "none")
    text_path = Path(text) if text else DEFAULT_MODEL_DIR / "heldout.txt"
    ids = model.tokenize(text_path.read_text(encoding="utf-8"), add_bos=False, parse_special=False)
    prefix = model.tokenize("", add_bos=True)
    n_ctx = len(prefix) + prompt_tokens + n_predict + 1
    exact = Context(model, n_ctx=n_ctx, n_threads=threads, exact_output=True)
    cert = Context(model, n_ctx=n_ctx, n_threads=threads, certified_top_k=max(top_k, 1))
    for i, (_, prompt) in enumerate(draw_prompts(ids, n_prompts, prompt_tokens, prefix, seed)):
        samplers = [None, None]
        if top_k > 0:
            samplers = [Sampler(temperature=0.8, top_k=top_k, top_p=1.0, min_p=0.0, seed=seed + i) for _ in range(2)]
        a = _generate(exact, samplers[0], prompt, n_predict, None)
        b = _generate(cert, samplers[1], prompt, n_predict, res.rescored)
        res.prompts += 1
        res.tokens += n_predict
        if a == b:
            res.identical += 1
        elif res.first_difference is None:
            res.first_difference = (i, next(j for j in range(n_predict) if a[j] != b[j]))
    return res


@click.command()
@click.option("--gguf", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file whose output matrix is F16 or F32.")
@click.option("--compact", default="q4_0", show_default=True, help="q6_k | q4_0 | q8_0")
@click.option("-N", "--n-prompts", default=200, show_default=True)
@click.option("--n-predict", default=100, show_default=True)
@click.option("--prompt-tokens", default=32, show_default=True)
@click.option("--top-k", default=0, show_default=True, help="0: greedy; K: top-k sampling with a fixed seed.")
@click.option("--text", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-t", "--threads", default=2, show_default=True)
def main(gguf, compact, n_prompts, n_predict, prompt_tokens, top_k, text, threads):
    r = certified_check(gguf, compact, n_prompts, n_predict, prompt_tokens, top_k, text, threads)
    resc = sorted(r.rescored)
    click.echo(f"compact {r.compact}: {r.identical}/{r.prompts} sequences identical ({r.tokens} tokens); "
               f"rescored rows per token mean {statistics.mean(resc):.1f}, median {statistics.median(resc):g}, "
               f"max {resc[-1]}" + (f"; first difference: prompt {r.first_difference[0]} step "
                                    f"{r.first_difference[1]}" if r.first_difference else ""))
    sys.exit(0 if r.identical == r.prompts else 1)


if __name__ == "__main__":
    run_cli(main)
