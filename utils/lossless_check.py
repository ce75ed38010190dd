"""The lossless check of the bitnet.cpp paper: greedy continuations of the engine against the
float32 reference on many prompts drawn from held-out text.

    python utils/lossless_check.py [--model-dir CKPT] [--gguf FILE] [--text FILE] [-N 200]
                                   [--n-predict 100] [--prompt-tokens 32] [-t 2] [--seed 0] [--json]

N prompts are windows of --prompt-tokens tokens taken at seeded random offsets of the held-out
text (default: CKPT/heldout.txt), tokenized once with the checkpoint's tokenizer.json; each gets the
tokenizer's special prefix (BOS) when the tokenizer adds one. Both sides then generate exactly
--n-predict greedy tokens (argmax, lowest id on ties, no stopping at EOS): the engine through the
C API (bitnet/bindings.py) on the I2_S GGUF, with its KV cache; the reference as transformers'
BitNetForCausalLM in float32 on one thread, step by step so that nothing (EOS suppression,
repetition penalties from generation_config.json) stands between its logits and its choice.

The reference configuration is chosen so that the engine can reproduce its float arithmetic bit
for bit (src/ops/ops.cpp): eager attention (matmul, softmax, matmul: MKL products and torch's
softmax kernel, whose summation orders are known, where SDPA's flash kernel blocks and rescales
differently), and no KV cache: each step runs the whole sequence, so that every attention product
is a matrix product of at least 12 rows (MKL's one-row products sum in an order of their own).
That costs the reference ~4x the time of cached decoding. What the engine still cannot reproduce
is torch's RoPE table: cos/sin come from MKL's vector math library, which differs from the C
library's in ~5% of the values by one ulp.

Why divergences can happen at all, and when one is acceptable: ternary products are exact integers
on both sides, but the int8 activation quantizer is a step function, and a value within one float
ulp of a rounding tie may round differently when one input upstream (here: a RoPE cos/sin value)
differs by an ulp. One flip moves the logits by up to ~1e-2 of their scale (FLIP_TOL bounds it, as in
tests/test_engine_reference.py), so a divergence is explained only where the reference's top-1/top-2
margin is below FLIP_TOL * max|logit|; anywhere else it is a bug. The report lists every divergence
with both margins, the per-step margin distribution, and how closely the logits agree while the
two contexts are still the same. Divergences are a finding, not an error: the exit code is 0
whenever the check ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The reference runs in float32 on one thread, and TorchDynamo would compile every call for
# seconds; both must be settled before torch is imported.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import click  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as `python utils/lossless_check.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitnet.common import DEFAULT_MODEL_DIR, BitnetError, display_path, run_cli  # noqa: E402

# Largest logit change one activation-quantizer flip can cause, relative to max|logit| (measured
# on the tiny models: ~1e-2; see tests/test_engine_reference.py).
FLIP_TOL = 3e-2
# Logits that agree to float rounding (measured 2e-7 to 5e-7 of max|logit|).
EXACT_TOL = 1e-5


@dataclasses.dataclass
class Divergence:
    """The first step at which the engine's greedy token differs from the reference's."""

    prompt: int  # index of the prompt (0..N-1)
    position: int  # token index in the continuation
    ref_token: int
    engine_token: int
    ref_margin: float  # reference top-1 minus top-2 logit at that step
    engine_margin: float  # the same on the engine's logits (same context up to this step)
    logit_scale: float  # max |reference logit| at that step
    ref_piece: str = ""  # the tokens as text, for the report
    engine_piece: str = ""

    @property
    def near_tie(self) -> bool:
        """Whether one quantizer flip can explain it (see the module docstring)."""
        return self.ref_margin <= FLIP_TOL * self.logit_scale


@dataclasses.dataclass
class SequenceResult:
    prompt: int
    start: int  # token offset of the window in the tokenized text
    prompt_ids: list[int]  # as fed to both sides, special prefix included
    ref_tokens: list[int]
    engine_tokens: list[int]
    max_rel_diff: float  # max |Δlogit| / max|logit| over the steps with a shared context
    divergence: Divergence | None


@dataclasses.dataclass
class LosslessResult:
    """Everything the check found; ``to_json`` gives its machine-readable form."""

    model_dir: str
    gguf: str
    text: str
    n_prompts: int
    n_predict: int
    prompt_tokens: int
    seed: int
    sequences: list[SequenceResult]
    ref_margins: np.ndarray  # [N, n_predict] reference top-1 minus top-2 at every step
    ref_scales: np.ndarray  # [N, n_predict] max |reference logit| at every step
    wall_s: float

    @property
    def identical(self) -> int:
        return sum(s.divergence is None for s in self.sequences)

    @property
    def divergences(self) -> list[Divergence]:
        return [s.divergence for s in self.sequences if s.divergence is not None]

    @property
    def unexplained(self) -> list[Divergence]:
        """Divergences where the reference was not at a near-tie: engine bugs."""
        return [d for d in self.divergences if not d.near_tie]

    def margin_summary(self) -> dict[str, float | int]:
        """Distribution of the reference's per-step top-1/top-2 margin, absolute and relative to
        max|logit|, and how many steps were near-ties (where a flip could change the token)."""
        m = self.ref_margins.ravel()
        rel = m / np.maximum(self.ref_scales.ravel(), np.finfo(np.float32).tiny)
        return {
            "steps": int(m.size),
            "min": float(m.min()),
            "p1": float(np.percentile(m, 1)),
            "p5": float(np.percentile(m, 5)),
            "median": float(np.median(m)),
            "min_rel": float(rel.min()),
            "median_rel": float(np.median(rel)),
            "near_tie_steps": int((rel <= FLIP_TOL).sum()),
        }

    def logit_summary(self) -> dict[str, float | int]:
        """How closely the logits agree while both sides share a context."""
        d = np.array([s.max_rel_diff for s in self.sequences])
        return {"max_rel_diff": float(d.max()), "median_rel_diff": float(np.median(d)),
                "sequences_exact": int((d <= EXACT_TOL).sum())}

    def to_json(self) -> dict:
        return {
            "model_dir": self.model_dir, "gguf": self.gguf, "text": self.text,
            "n_prompts": self.n_prompts, "n_predict": self.n_predict,
            "prompt_tokens": self.prompt_tokens, "seed": self.seed, "wall_s": self.wall_s,
            "identical": self.identical, "flip_tol": FLIP_TOL,
            "divergences": [dict(dataclasses.asdict(d), near_tie=d.near_tie) for d in self.divergences],
            "margins": self.margin_summary(), "logits": self.logit_summary(),
            "sequences": [{k: v for k, v in dataclasses.asdict(s).items() if k != "divergence"}
                          | {"diverged_at": None if s.divergence is None else s.divergence.position}
                          for s in self.sequences],
        }


# The engine setting that follows torch's float arithmetic: exact attention, f32 KV cache.
EXACT_CACHE = {"type_k": "f32", "type_v": "f32", "flash_attn": False}


def _top2_margin(logits: np.ndarray) -> float:
    top2 = np.partition(logits, -2)[-2:]
    return float(top2[1] - top2[0])


def draw_prompts(token_ids: list[int], n: int, length: int, prefix: list[int],
                 seed: int) -> list[tuple[int, list[int]]]:
    """``n`` windows of ``length`` tokens at offsets drawn with ``seed``, each as (offset, prefix +
    window). Offsets are distinct while the text has enough, and a smaller ``n`` draws the first
    prompts of a larger one (a quick run checks a prefix of the full one)."""
    n_windows = len(token_ids) - length + 1
    if n_windows < 1:
        raise BitnetError(f"the held-out text has only {len(token_ids)} tokens, fewer than "
                          f"--prompt-tokens {length}: use a longer --text or a smaller --prompt-tokens")
    rng = np.random.default_rng(seed)
    starts = np.concatenate([rng.permutation(n_windows) for _ in range(-(-n // n_windows))])[:n]
    return [(int(s), prefix + token_ids[s:s + length]) for s in starts]


def load_reference(model_dir: Path):
    """transformers' BitNetForCausalLM in float32 on one thread with eager attention (see the module
    docstring): packed checkpoints run their BitLinear, master-weight checkpoints are ternarized
    online as in training."""
    import torch
    from transformers import BitNetForCausalLM, BitNetQuantConfig
    from transformers.utils import logging

    torch.set_num_threads(1)
    logging.set_verbosity_error()  # its notes and progress bars are not this tool's output
    logging.disable_progress_bar()
    cfg = json.loads((model_dir / "config.json").read_text())
    kwargs = {}
    if "quantization_config" not in cfg:
        kwargs["quantization_config"] = BitNetQuantConfig(linear_class="autobitlinear",
                                                          quantization_mode="online")
    model = BitNetForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager",
                                              **kwargs)
    return autobitlinear_in_float32(model).eval()


def autobitlinear_in_float32(model):
    """model computing in float32 when its config is offline AutoBitLinear (the real 2B4T's: packed
    codes, weight_scale multiplied). For that config transformers loads every tensor in the
    checkpoint's bf16, whatever dtype was asked for, and a float32 forward then fails (BFloat16 !=
    float in F.linear). Every stored value (codes -1, 0, 1, bf16 scales, norms, embeddings) is exact
    in float32, so casting the model changes no value, only the arithmetic: the reference computes
    in float32 like the other layouts' references, with no looser tolerance."""
    import torch

    return model.to(torch.float32)  # a no-op for a model already in float32


def reference_greedy(model, prompt: list[int], n: int) -> np.ndarray:
    """Logits [n, vocab] of the reference's own greedy continuation: row i is the distribution
    the i-th new token is chosen from (argmax). Each step runs the whole sequence (no KV cache),
    so every attention product is a matrix product whose summation order the engine reproduces
    (see the module docstring)."""
    import torch

    rows, seq = [], list(prompt)
    with torch.no_grad():
        for i in range(n):
            logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
            rows.append(logits.numpy().copy())
            seq.append(int(torch.argmax(logits)))
    return np.stack(rows)


def _engine_sequence(model, index: int, start: int, prompt: list[int], ref_logits: np.ndarray,
                     threads: int, piece: Callable[[int], str], cache: dict) -> SequenceResult:
    """The engine's greedy continuation of ``prompt``, compared step by step with the reference."""
    from bitnet.bindings import Context

    n = len(ref_logits)
    ref_tokens = [int(np.argmax(r)) for r in ref_logits]
    tokens: list[int] = []
    max_rel, divergence = 0.0, None
    with Context(model, n_ctx=len(prompt) + n, n_threads=threads, **cache) as ctx:
        logits = ctx.decode(prompt)[-1]
        for i in range(n):
            token = int(np.argmax(logits))
            if divergence is None:  # the contexts are still the same: compare the logits
                ref = ref_logits[i]
                scale = float(np.abs(ref).max())
                max_rel = max(max_rel, float(np.abs(logits - ref).max()) / scale)
                if token != ref_tokens[i]:
                    divergence = Divergence(index, i, ref_tokens[i], token, _top2_margin(ref),
                                            _top2_margin(logits), scale,
                                            piece(ref_tokens[i]), piece(token))
            tokens.append(token)
            if i + 1 < n:
                logits = ctx.decode([token])[-1]
    return SequenceResult(index, start, prompt, ref_tokens, tokens, max_rel, divergence)


def resolve_gguf(model_dir: Path, gguf: Path | None, tmp_dir: Path,
                 log: Callable[[str], None]) -> Path:
    """The GGUF to test: ``gguf`` if given; else model_dir/ggml-model-i2_s-f32out.gguf when it is
    newer than the checkpoint; else a fresh conversion, next to the checkpoint when the folder is
    writable, in ``tmp_dir`` otherwise. The protocol's file has I2_S linears and a float32
    embedding/output matrix like the reference's (the converter's default output type is
    quantized, which is a separate, measured trade-off: see default_embd_type)."""
    from bitnet.convert.hf import convert

    if gguf is not None:
        if not gguf.is_file():
            raise BitnetError(f"GGUF file {display_path(gguf)} not found: pass an existing file, or "
                              "leave out --gguf to convert the checkpoint")
        return gguf
    beside = model_dir / "ggml-model-i2_s-f32out.gguf"
    sources = [p for p in model_dir.iterdir() if p.suffix in (".json", ".safetensors")]
    newest = max(p.stat().st_mtime for p in sources)
    if beside.is_file() and beside.stat().st_mtime >= newest:
        log(f"engine model: {display_path(beside)}")
        return beside
    out = tmp_dir / beside.name if beside.exists() or not os.access(model_dir, os.W_OK) else beside
    log(f"converting {display_path(model_dir)} to {display_path(out)}")
    return convert(model_dir, out, outtype="i2_s", embd_type="f32")


def _check_inputs(model_dir: Path, text: Path, n_prompts: int, n_predict: int,
                  prompt_tokens: int) -> dict:
    """Validate paths and sizes; return the checkpoint's config.json."""
    if not (model_dir / "config.json").is_file():
        raise BitnetError(f"no Hugging Face checkpoint at {display_path(model_dir)} (config.json is "
                          "missing): pass --model-dir with a BitNet checkpoint folder")
    if not (model_dir / "tokenizer.json").is_file():
        raise BitnetError(f"{display_path(model_dir)} has no tokenizer.json: the prompts are tokenized "
                          "with it, so the checkpoint needs one")
    if not text.is_file():
        raise BitnetError(f"held-out text {display_path(text)} not found: pass --text FILE with "
                          "text the model was not trained on")
    if min(n_prompts, n_predict, prompt_tokens) < 1:
        raise BitnetError("-N, --n-predict and --prompt-tokens must be at least 1")
    cfg = json.loads((model_dir / "config.json").read_text())
    n_pos = cfg.get("max_position_embeddings")
    if n_pos and prompt_tokens + 1 + n_predict > n_pos:
        raise BitnetError(f"--prompt-tokens + --n-predict = {prompt_tokens + n_predict} (+ BOS) exceeds "
                          f"the model's context of {n_pos} tokens: ask for fewer tokens")
    return cfg


def _reference_store(path: Path | None, prompts: list[tuple[int, list[int]]], n_predict: int,
                     model_dir: Path) -> tuple[dict[int, np.ndarray], Callable[[], None]]:
    """The reference's logits that an earlier run saved (an .npz file) for prompts of this run, on
    the same checkpoint and n_predict, and a function that writes them with the ones computed now.
    Comparing several engine settings (-ctk/-ctv/-fa) then costs the reference once: it is nearly
    all of the time. Entries are keyed by the prompt's tokens, so a run with another -N reuses
    the prompts they share."""
    model_key = json.dumps([str(model_dir.resolve()), (model_dir / "config.json").stat().st_mtime_ns, n_predict])

    def name(prompt: list[int]) -> str:
        return "p" + hashlib.sha1(json.dumps(prompt).encode()).hexdigest()

    stored: dict[str, np.ndarray] = {}
    if path is not None and path.is_file():
        with np.load(path) as f:
            if str(f["key"]) == model_key:
                stored = {k: f[k] for k in f.files if k != "key"}
    saved = {i: stored[name(p)] for i, (_, p) in enumerate(prompts) if name(p) in stored}

    def write() -> None:
        if path is None:
            return
        stored.update({name(prompts[i][1]): v for i, v in saved.items()})
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, key=np.array(model_key), **stored)
        os.replace(tmp, path)
    return saved, write


def _run_prompts(engine, model_dir: Path, cfg: dict, tok, prompts: list[tuple[int, list[int]]],
                 n_predict: int, threads: int, progress, log, cache: dict, reference_cache: Path | None = None):
    """Both sides on every prompt: (sequences, reference margins [N, n], max|logit| [N, n])."""
    from bitnet import bindings

    if engine.n_vocab != cfg.get("vocab_size", engine.n_vocab):
        raise BitnetError(f"the GGUF has {engine.n_vocab} tokens but the checkpoint {cfg['vocab_size']}: "
                          "pass the GGUF converted from --model-dir")
    saved, write_saved = _reference_store(reference_cache, prompts, n_predict, model_dir)
    reference = None
    if len(saved) < len(prompts):
        log(f"loading the reference (transformers, float32) from {display_path(model_dir)}")
        reference = load_reference(model_dir)
    else:
        log(f"the reference's logits of every prompt come from {display_path(reference_cache)}")

    def piece(t: int) -> str:
        return tok.decode([t], skip_special_tokens=False)

    sequences = []
    t_loop = time.perf_counter()  # the ETA counts prompts only, not conversion and loading
    margins = np.empty((len(prompts), n_predict))
    scales = np.empty((len(prompts), n_predict))
    for i, (start, prompt) in enumerate(prompts):
        if i not in saved:
            saved[i] = reference_greedy(reference, prompt, n_predict)
            if (i + 1) % 10 == 0:
                write_saved()
        ref_logits = saved[i]
        margins[i] = [_top2_margin(r) for r in ref_logits]
        scales[i] = np.abs(ref_logits).max(axis=1)
        try:
            sequences.append(_engine_sequence(engine, i, start, prompt, ref_logits, threads, piece, cache))
        except bindings.BitnetError as e:
            raise BitnetError(f"the engine failed on prompt {i}: {e}") from e
        if progress is not None:
            progress(i + 1, len(prompts), sum(s.divergence is None for s in sequences),
                     time.perf_counter() - t_loop)
    write_saved()
    return sequences, margins, scales


def lossless_check(model_dir: str | Path = DEFAULT_MODEL_DIR, gguf: str | Path | None = None,
                   text: str | Path | None = None, n_prompts: int = 200, n_predict: int = 100,
                   prompt_tokens: int = 32, threads: int = 2, seed: int = 0,
                   progress: Callable[[int, int, int, float], None] | None = None,
                   log: Callable[[str], None] = lambda _: None,
                   cache: dict | None = None, reference_cache: str | Path | None = None) -> LosslessResult:
    """Run the check (see the module docstring) and return what it found.

    ``text`` defaults to model_dir/heldout.txt. ``progress(i, n, identical, elapsed_s)`` is called
    after each prompt, ``log`` with one-line notes (conversion, loading). Raises ``BitnetError``
    for bad input (missing checkpoint or text, text too short, GGUF not matching the checkpoint,
    engine not built); divergences are reported in the result, never raised. ``cache``: the
    engine context's KV cache and attention settings (bindings.Context's type_k, type_v,
    flash_attn); default the exact attention over an f32 cache, the configuration that follows
    torch's arithmetic. ``reference_cache``: an .npz file that keeps the reference's logits for
    later runs on the same checkpoint, prompts and length.
    """
    from tokenizers import Tokenizer

    from bitnet import bindings

    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    text = Path(text) if text is not None else model_dir / "heldout.txt"
    cfg = _check_inputs(model_dir, text, n_prompts, n_predict, prompt_tokens)

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # The special tokens the tokenizer puts in front of a text (BOS, when it adds one).
    with_special = tok.encode("a", add_special_tokens=True).ids
    plain = tok.encode("a", add_special_tokens=False).ids
    prefix = with_special[:with_special.index(plain[0])] if plain[0] in with_special else []
    ids = tok.encode(text.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False).ids
    prompts = draw_prompts(ids, n_prompts, prompt_tokens, prefix, seed)

    with tempfile.TemporaryDirectory(prefix="bitnet-lossless-") as tmp:
        gguf_path = resolve_gguf(model_dir, Path(gguf) if gguf is not None else None, Path(tmp), log)
        try:
            engine = bindings.Model(gguf_path)
        except bindings.BitnetError as e:
            raise BitnetError(f"the engine could not load {display_path(gguf_path)}: {e}") from e
        with engine:
            sequences, margins, scales = _run_prompts(engine, model_dir, cfg, tok, prompts, n_predict,
                                                      threads, progress, log,
                                                      EXACT_CACHE if cache is None else cache,
                                                      Path(reference_cache) if reference_cache else None)
    return LosslessResult(str(model_dir), str(gguf_path), str(text), n_prompts, n_predict,
                          prompt_tokens, seed, sequences, margins, scales, time.perf_counter() - t0)


def format_report(r: LosslessResult) -> str:
    """The human-readable report."""
    lines = [f"{r.identical}/{r.n_prompts} sequences identical ({r.n_predict} greedy tokens each, "
             f"prompts of {r.prompt_tokens} tokens, seed {r.seed}, {r.wall_s:.1f} s)"]
    for d in r.divergences:
        why = ("reference near-tie" if d.near_tie
               else f"NOT a near-tie (bound {FLIP_TOL * d.logit_scale:.3g}): engine bug")
        lines.append(f"  prompt {d.prompt}, token {d.position}: reference margin {d.ref_margin:.3g}, "
                     f"engine margin {d.engine_margin:.3g}; reference chose {d.ref_token} "
                     f"{d.ref_piece!r}, engine {d.engine_token} {d.engine_piece!r} ({why})")
    m, g = r.margin_summary(), r.logit_summary()
    lines.append(f"reference top-1/top-2 margin over {m['steps']} steps: min {m['min']:.3g}, "
                 f"1% {m['p1']:.3g}, 5% {m['p5']:.3g}, median {m['median']:.3g} "
                 f"(relative to max|logit|: min {m['min_rel']:.2e}, median {m['median_rel']:.2e}); "
                 f"{m['near_tie_steps']} steps below the flip bound {FLIP_TOL:g}")
    lines.append(f"logits while the contexts agree: max |Δ|/max|logit| {g['max_rel_diff']:.2e} "
                 f"(median over sequences {g['median_rel_diff']:.2e}); "
                 f"{g['sequences_exact']}/{r.n_prompts} sequences within float rounding ({EXACT_TOL:g})")
    if r.unexplained:
        lines.append(f"{len(r.unexplained)} divergence(s) NOT explained by a reference near-tie")
    return "\n".join(lines)


def _progress_printer() -> Callable[[int, int, int, float], None]:
    """Progress on stderr: a line that rewrites itself on a terminal, ~20 lines otherwise."""
    tty = sys.stderr.isatty()

    def show(i: int, n: int, identical: int, elapsed: float) -> None:
        if not tty and i != n and i % max(1, n // 20):
            return
        eta = elapsed / i * (n - i)
        line = f"prompt {i}/{n}: {identical}/{i} identical, {elapsed:.0f} s elapsed, ETA {eta:.0f} s"
        if tty:
            sys.stderr.write("\r\x1b[K" + line + ("\n" if i == n else ""))
            sys.stderr.flush()
        else:
            click.echo(line, err=True)

    return show


@click.command()
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_MODEL_DIR,
              show_default="the shipped model", help="Hugging Face checkpoint (the reference).")
@click.option("--gguf", type=click.Path(dir_okay=False, path_type=Path),
              help="Engine model [default: MODEL_DIR/ggml-model-i2_s-f32out.gguf (i2_s, float32 output), converted if missing or stale].")
@click.option("--text", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out text to draw prompts from [default: MODEL_DIR/heldout.txt].")
@click.option("-N", "--n-prompts", default=200, show_default=True, help="Number of prompts.")
@click.option("--n-predict", default=100, show_default=True, help="Greedy tokens per prompt.")
@click.option("--prompt-tokens", default=32, show_default=True, help="Tokens per prompt (before BOS).")
@click.option("-t", "--threads", default=2, show_default=True, help="Engine threads.")
@click.option("--seed", default=0, show_default=True, help="Seed of the prompt draw.")
@click.option("-ctk", "--cache-type-k", "type_k", type=click.Choice(["f32", "f16", "q8_0"]), default="f32",
              show_default=True, help="Engine KV cache type of the keys.")
@click.option("-ctv", "--cache-type-v", "type_v", type=click.Choice(["f32", "f16", "q8_0"]), default="f32",
              show_default=True, help="... of the values.")
@click.option("-fa", "--flash-attn", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="on: the engine's tiled attention; off: its exact attention (torch's summation order).")
@click.option("--reference-cache", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the reference's logits in this .npz file, and take them from it when an earlier "
                   "run on the same checkpoint, prompts and length wrote it (to compare engine settings).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def main(model_dir, gguf, text, n_prompts, n_predict, prompt_tokens, threads, seed, type_k, type_v,
         flash_attn, reference_cache, as_json):
    """Greedy continuations of the engine vs the transformers float32 reference on N held-out
    prompts; lists every divergence with the margins that explain (or do not explain) it."""
    cache = {"type_k": type_k, "type_v": type_v, "flash_attn": flash_attn == "on"}
    result = lossless_check(model_dir, gguf, text, n_prompts, n_predict, prompt_tokens, threads, seed,
                            progress=_progress_printer(), log=lambda s: click.echo(s, err=True), cache=cache,
                            reference_cache=reference_cache)
    click.echo(json.dumps(result.to_json(), indent=1) if as_json else format_report(result))


if __name__ == "__main__":
    run_cli(main)
