"""Train a small BitNet b1.58 model on Python's own documentation and ship it in Hugging Face format.

Quantization-aware training (QAT) of the bitnet-b1.58-2B-4T architecture (ReLU² gated FFN,
attn_sub_norm / ffn_sub_norm, NEOX RoPE, GQA, tied embeddings, RMSNorm eps 1e-5) at a size a
laptop CPU trains in half an hour. Every projection runs, in the forward pass, exactly the
arithmetic of transformers' BitNet (integrations/bitnet.py) and of our engine:
  weights      per tensor s = 1/max(mean|W|, 1e-5); W_q = clamp(round_half_even(W*s), -1, 1) / s
  activations  per token  a = 127/max(max|x|, 1e-5); x_q = clamp(round(x*a), -128, 127) / a
with straight-through gradients (the float master weights W are what AdamW updates). The lm_head is
the tied embedding and stays in float, as in the real checkpoint.

Data, available offline on every machine: pydoc_data.topics plus the docstrings of the standard
library, read with `ast` from the .py files (never imported), in sorted path order, deduplicated.
Every HELDOUT_EVERY-th document is held out. Python versions ship different docstrings, so the
corpus (and the trained model) depend on the interpreter's version, which the card records.

The export is the offline packed format of microsoft/bitnet-b1.58-2B-4T: uint8 ternary codes plus
`weight_scale` = s (BitLinear divides by it), config.json with quantization_mode offline, the
byte-level BPE tokenizer (trained here on the training split, with the dummy models' special tokens
and chat template), generation_config.json, heldout.txt (the held-out documents) and a README.md
card. Held-out loss is measured twice: by our module and by transformers on the exported files.
"""

from __future__ import annotations

import ast
import json
import math
import platform
import shlex
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

if __package__ in (None, ""):  # run as `python utils/train_tiny_model.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bitnet.common import run_cli  # noqa: E402
from utils.generate_dummy_model import (  # noqa: E402
    EOS_TEXT,
    QUANT_CONFIG_PACKED,
    build_tokenizer,
    write_tokenizer_and_configs,
)
from bitnet.formats.ternary import pack_hf  # noqa: E402

HELDOUT_EVERY = 20  # document i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1
HELDOUT_TXT_MAX_BYTES = 300_000  # heldout.txt keeps whole documents up to this size
MIN_DOC_CHARS = 40  # shorter docstrings ("Return self.") are noise, not text
# Parts of the standard library whose docstrings are test scaffolding, demos or vendored code.
SKIP_DIRS = {"test", "tests", "idlelib", "turtledemo", "lib2to3", "ensurepip", "site-packages",
             "dist-packages", "__pycache__", "__phello__"}
ROPE_THETA = 500000.0  # what write_tokenizer_and_configs puts in config.json
RMS_EPS = 1e-5


# ----------------------------------------------------------------------------- data

def collect_documents() -> list[str]:
    """pydoc_data.topics (sorted by key) then every module/class/function docstring of the standard
    library (sorted paths, ast order), exact duplicates dropped, keeping first occurrences."""
    import pydoc_data.topics

    docs = [pydoc_data.topics.topics[k].strip() for k in sorted(pydoc_data.topics.topics)]
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith("test") for part in rel.parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):  # a few stdlib files are deliberately invalid (badsyntax_*)
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc.strip())
    seen: set[str] = set()
    return [d for d in docs if len(d) >= MIN_DOC_CHARS and not (d in seen or seen.add(d))]


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    """(train, held-out): every HELDOUT_EVERY-th document is held out."""
    held = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return train, held


def truncate_heldout(held: list[str]) -> list[str]:
    """The leading held-out documents that fit in HELDOUT_TXT_MAX_BYTES as heldout.txt (documents
    separated by one blank line); held-out loss is measured on exactly these."""
    kept, size = [], 0
    for d in held:
        size += len(d.encode()) + 2
        if size > HELDOUT_TXT_MAX_BYTES:
            break
        kept.append(d)
    return kept


def encode_stream(tok, docs: list[str]) -> torch.Tensor:
    """One token stream: <|begin_of_text|> document <|end_of_text|> for each document, so the
    model learns where text starts (the engine prompts with BOS first) and ends."""
    eos = tok.token_to_id(EOS_TEXT)
    ids: list[int] = []
    for enc in tok.encode_batch(docs, add_special_tokens=True):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


# ----------------------------------------------------------------------------- model

@dataclass
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    ctx: int

    def check(self) -> None:
        """Raise click.ClickException unless every engine kernel accepts this shape."""
        for key in ("hidden", "ffn"):
            if getattr(self, key) % 128:  # I2_S packs the inner dimension in blocks of 128
                raise click.ClickException(f"--{key} {getattr(self, key)} must be a multiple of 128 (I2_S blocks)")
        if self.hidden % self.heads or self.heads % self.kv_heads or (self.hidden // self.heads) % 2:
            raise click.ClickException(
                f"hidden {self.hidden} must split into {self.heads} heads of even size, "
                f"and heads into groups of kv-heads {self.kv_heads}"
            )
        if self.vocab < 512:
            raise click.ClickException(f"--vocab {self.vocab} is too small: use at least 512")


class WeightQuantSTE(torch.autograd.Function):
    """transformers' WeightQuant: per-tensor absmean ternarization; identity gradient."""

    @staticmethod
    def forward(ctx, w):
        s = 1.0 / w.abs().mean().clamp(min=1e-5)
        return (w * s).round().clamp(-1, 1) / s

    @staticmethod
    def backward(ctx, g):
        return g


class ActQuantSTE(torch.autograd.Function):
    """transformers' ActQuant: per-token int8 absmax quantization; identity gradient."""

    @staticmethod
    def forward(ctx, x):
        a = 127 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
        return (x * a).round().clamp(-128, 127) / a

    @staticmethod
    def backward(ctx, g):
        return g


class QLinear(nn.Module):
    """A bias-free BitLinear: float master weight [out, in], ternary × int8 in the forward pass."""

    def __init__(self, in_f: int, out_f: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_f, in_f))

    def forward(self, x):
        return F.linear(ActQuantSTE.apply(x), WeightQuantSTE.apply(self.weight))


class RMSNorm(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS))


class Block(nn.Module):
    """One BitNetDecoderLayer: x += o(subnorm(attn(q,k,v of norm(x)))); x += down(subnorm(relu²(gate)·up))."""

    def __init__(self, sh: Shape):
        super().__init__()
        hd = sh.hidden // sh.heads
        self.heads, self.kv_heads, self.head_dim = sh.heads, sh.kv_heads, hd
        self.input_layernorm = RMSNorm(sh.hidden)
        self.q_proj = QLinear(sh.hidden, sh.heads * hd)
        self.k_proj = QLinear(sh.hidden, sh.kv_heads * hd)
        self.v_proj = QLinear(sh.hidden, sh.kv_heads * hd)
        self.attn_sub_norm = RMSNorm(sh.hidden)
        self.o_proj = QLinear(sh.hidden, sh.hidden)
        self.post_attention_layernorm = RMSNorm(sh.hidden)
        self.gate_proj = QLinear(sh.hidden, sh.ffn)
        self.up_proj = QLinear(sh.hidden, sh.ffn)
        self.ffn_sub_norm = RMSNorm(sh.ffn)
        self.down_proj = QLinear(sh.ffn, sh.hidden)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope_neox(q, cos, sin), rope_neox(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        a = a.transpose(1, 2).reshape(b, t, -1)
        x = x + self.o_proj(self.attn_sub_norm(a))
        h = self.post_attention_layernorm(x)
        g = F.relu(self.gate_proj(h)).square() * self.up_proj(h)
        return x + self.down_proj(self.ffn_sub_norm(g))


def rope_neox(x, cos, sin):
    """NEOX rotation (rotate_half): dimension i pairs with i + head_dim/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class TinyBitNet(nn.Module):
    """BitNetForCausalLM's forward, compactly: embed, layers, final norm, tied float lm_head."""

    def __init__(self, sh: Shape):
        super().__init__()
        self.shape = sh
        self.embed = nn.Embedding(sh.vocab, sh.hidden)
        self.layers = nn.ModuleList(Block(sh) for _ in range(sh.layers))
        self.norm = RMSNorm(sh.hidden)
        hd = sh.hidden // sh.heads
        inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
        freqs = torch.arange(sh.ctx, dtype=torch.float)[:, None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def init_weights(self, gen: torch.Generator) -> None:
        # Small normal init; the absmean scale makes the ternary weights' magnitude follow it.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 if name.startswith("embed") else 1.0 / math.sqrt(p.shape[1])
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.embed(ids)
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin)
        return F.linear(self.norm(x), self.embed.weight)


def heldout_windows(stream: torch.Tensor, ctx: int) -> torch.Tensor:
    """Non-overlapping [n, ctx+1] windows (each shares its last token with the next window's first),
    so every token after the first is predicted exactly once, with up to ctx tokens of context."""
    n = (len(stream) - 1) // ctx
    return torch.stack([stream[i * ctx: i * ctx + ctx + 1] for i in range(n)])


@torch.no_grad()
def mean_loss(forward, windows: torch.Tensor, batch: int = 8) -> float:
    """Mean next-token cross-entropy (nats) over all windows; forward(ids) -> logits."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i: i + batch]
        logits = forward(w[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += w[:, 1:].numel()
    return total / count


# ----------------------------------------------------------------------------- export

def export_checkpoint(model: TinyBitNet, tok, out: Path, float_dtype: torch.dtype) -> None:
    """Write the offline packed HF checkpoint (all files but README.md and heldout.txt).

    float_dtype: storage of the embedding, norms and weight_scale (bfloat16 like the real
    checkpoint, or float32)."""
    from safetensors.torch import save_file

    sh = model.shape
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer_and_configs(out, tok, asdict(sh), QUANT_CONFIG_PACKED)
    if float_dtype == torch.float32:
        cfg = json.loads((out / "config.json").read_text())
        cfg["torch_dtype"] = "float32"
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tensors: dict[str, torch.Tensor] = {"model.embed_tokens.weight": model.embed.weight.detach().to(float_dtype)}
    hf_names = {
        "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
        "o_proj": "self_attn.o_proj", "attn_sub_norm": "self_attn.attn_sub_norm",
        "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj", "down_proj": "mlp.down_proj",
        "ffn_sub_norm": "mlp.ffn_sub_norm",
        "input_layernorm": "input_layernorm", "post_attention_layernorm": "post_attention_layernorm",
    }
    for i, layer in enumerate(model.layers):
        for ours, theirs in hf_names.items():
            mod = getattr(layer, ours)
            name = f"model.layers.{i}.{theirs}"
            w = mod.weight.detach().float()
            if isinstance(mod, QLinear):
                s = 1.0 / w.abs().mean().clamp(min=1e-5)  # the very expression of WeightQuantSTE
                t = (w * s).round().clamp(-1, 1).to(torch.int8).numpy()
                tensors[name + ".weight"] = torch.from_numpy(pack_hf(t))
                tensors[name + ".weight_scale"] = s.reshape(1).to(float_dtype)
            else:
                tensors[name + ".weight"] = w.to(float_dtype)
    tensors["model.norm.weight"] = model.norm.weight.detach().to(float_dtype)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})


def load_reference(ckpt: Path):
    """The exported checkpoint in transformers' BitNetForCausalLM (offline BitLinear, float32)."""
    import os

    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # BitLinear's @torch.compile: eager is enough
    from transformers import BitNetForCausalLM

    model = BitNetForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


# ----------------------------------------------------------------------------- training

def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def log(msg: str) -> None:
    click.echo(msg, err=True)


@dataclass
class Result:
    steps: int
    seconds: float
    train_loss: float  # mean of the last steps' batch losses
    heldout_ours: float
    heldout_hf: float
    heldout_hf_f32: float  # transformers on a float32 export, for the bf16 rounding check
    heldout_tokens: int
    train_tokens: int
    params: int
    float_dtype: str
    sample: str


def train(outdir: Path, sh: Shape, steps: int | None, max_minutes: float | None, batch: int, lr: float,
          warmup: int, weight_decay: float, seed: int, eval_every: int, sample_prompt: str,
          command: str, compile_model: bool = True) -> Result:
    """Train, export to outdir and write the card; returns the measurements."""
    torch.manual_seed(seed)
    t0 = time.time()
    docs = collect_documents()
    train_docs, held_docs = split_documents(docs)
    held_docs = truncate_heldout(held_docs)
    tok = build_tokenizer(sh.vocab, corpus=train_docs)
    train_stream = encode_stream(tok, train_docs)
    held_windows = heldout_windows(encode_stream(tok, held_docs), sh.ctx)
    log(f"data: {len(train_docs)} train docs ({len(train_stream)} tokens), {len(held_docs)} held-out docs "
        f"({held_windows[:, 1:].numel()} tokens) in {time.time() - t0:.1f}s")

    model = TinyBitNet(sh)
    gen = torch.Generator().manual_seed(seed)
    model.init_weights(gen)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters, {asdict(sh)}")
    decay = [p for p in model.parameters() if p.dim() == 2 and p is not model.embed.weight]
    no_decay = [p for p in model.parameters() if not any(p is q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), fused=True)

    def batch_at() -> torch.Tensor:
        starts = torch.randint(0, len(train_stream) - sh.ctx - 1, (batch,), generator=gen)
        return torch.stack([train_stream[s: s + sh.ctx + 1] for s in starts.tolist()])

    def batch_loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(w[:, :-1]).reshape(-1, sh.vocab), w[:, 1:].reshape(-1))

    # Inductor fuses the quantizers' elementwise chains: about 2x faster steps on CPU, after a
    # compilation of about a minute (the first step).
    step_loss = torch.compile(batch_loss) if compile_model else batch_loss
    t_train = time.time()
    deadline = t_train + max_minutes * 60 if max_minutes else None
    total = steps
    step, recent, t_first = 0, [], None
    while total is None or step < total:
        if total is None and step == 11:
            # Only a time budget: fix the schedule's length from the speed of the first steps
            # (the first one, which compiles, excluded).
            per_step = (time.time() - t_first) / (step - 1)
            total = max(step + 1, int((deadline - time.time()) / per_step))
            log(f"--max-minutes {max_minutes}: {per_step:.2f}s/step -> {total} steps (pass --steps {total} "
                f"to reproduce)")
        if deadline and time.time() > deadline and total is not None and step < total:
            log(f"time budget spent: stopping at step {step} of {total}")
            command += f" --max-minutes={max_minutes}"  # the schedule was cut: reproduce the cut too
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total or 10**9, lr, warmup)
        loss = step_loss(batch_at())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent = (recent + [loss.item()])[-20:]
        t_first = t_first or time.time()
        elapsed = time.time() - t_train
        if step % 10 == 0 or step == total:
            per_step = (time.time() - t_first) / max(1, step - 1)
            tps = batch * sh.ctx / per_step
            eta = f"{(total - step) * per_step / 60:.1f}min" if total else "?"
            log(f"step {step}/{total or '?'} loss {loss.item():.4f} (avg20 {sum(recent) / len(recent):.4f}) "
                f"lr {opt.param_groups[0]['lr']:.2e} {tps:.0f} tok/s elapsed {elapsed / 60:.1f}min eta {eta}")
        if eval_every and step % eval_every == 0 and step != total:
            model.eval()
            log(f"step {step}: held-out loss {mean_loss(model, held_windows):.4f}")
            model.train()
    seconds = time.time() - t_train
    command += f" --steps={total}"
    model.eval()
    heldout_ours = mean_loss(model, held_windows)
    train_loss = sum(recent) / len(recent)
    log(f"trained {step} steps in {seconds / 60:.1f}min: train loss {train_loss:.4f}, held-out {heldout_ours:.4f}")

    # bf16 storage like the real checkpoint, unless its rounding costs > 0.1% of held-out loss.
    export_checkpoint(model, tok, outdir, torch.float32)
    ref = load_reference(outdir)
    heldout_f32 = mean_loss(lambda ids: ref(ids).logits, held_windows)
    export_checkpoint(model, tok, outdir, torch.bfloat16)
    ref = load_reference(outdir)
    heldout_hf = mean_loss(lambda ids: ref(ids).logits, held_windows)
    float_dtype = "bfloat16"
    if heldout_hf > heldout_f32 * 1.001:
        export_checkpoint(model, tok, outdir, torch.float32)
        ref = load_reference(outdir)
        heldout_hf, float_dtype = heldout_f32, "float32"
    log(f"held-out loss: ours {heldout_ours:.4f}, transformers on the export {heldout_hf:.4f} ({float_dtype}; "
        f"float32 export {heldout_f32:.4f})")

    ids = tok.encode(sample_prompt, add_special_tokens=True).ids
    with torch.no_grad():
        gen_ids = ref.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False,
                               pad_token_id=tok.token_to_id(EOS_TEXT))[0].tolist()
    sample = tok.decode(gen_ids[1:], skip_special_tokens=False)
    (outdir / "heldout.txt").write_text("\n\n".join(held_docs) + "\n", encoding="utf-8")
    result = Result(step, seconds, train_loss, heldout_ours, heldout_hf, heldout_f32,
                    int(held_windows[:, 1:].numel()), int(len(train_stream)), n_params, float_dtype, sample)
    write_card(outdir, sh, result, batch, lr, warmup, weight_decay, seed, command, len(train_docs), len(held_docs))
    return result


def write_card(out: Path, sh: Shape, r: Result, batch: int, lr: float, warmup: int, wd: float, seed: int,
               command: str, n_train_docs: int, n_held_docs: int) -> None:
    """README.md: what the model is, how it was made, how good it is."""
    hd = sh.hidden // sh.heads
    card = f"""# bitnet-tiny

A BitNet b1.58 model of {r.params / 1e6:.1f}M parameters (ternary weights, int8 activations) with the
architecture of microsoft/bitnet-b1.58-2B-4T, trained from scratch on a CPU in {r.seconds / 60:.0f} minutes
by `utils/train_tiny_model.py`. It writes docstring-flavoured English about Python; it is a test
and demo model, not an assistant.

## Shapes

| hidden | layers | heads | kv heads | head dim | FFN | vocab | context |
|---|---|---|---|---|---|---|---|
| {sh.hidden} | {sh.layers} | {sh.heads} | {sh.kv_heads} | {hd} | {sh.ffn} | {sh.vocab} | {sh.ctx} |

ReLU² gated FFN, attn_sub_norm and ffn_sub_norm, NEOX RoPE (theta {ROPE_THETA:g}), RMSNorm eps
{RMS_EPS:g}, tied embeddings (the output layer is the float embedding). The files follow the
offline packed format of the real checkpoint: uint8 ternary codes + `weight_scale` (= 1/mean|W|) per
projection; the embedding, norms and scales are stored in {r.float_dtype}
(held-out loss of a float32 export: {r.heldout_hf_f32:.4f}, of this one: {r.heldout_hf:.4f}).

## Data

Python's own documentation, read offline (Python {platform.python_version()}): `pydoc_data.topics`
plus the docstrings of the standard library, parsed with `ast` (no imports), sorted by path,
deduplicated, shorter than {MIN_DOC_CHARS} characters dropped. Every {HELDOUT_EVERY}th document is held out:
{n_train_docs} training documents ({r.train_tokens} tokens), {n_held_docs} held-out documents
({r.heldout_tokens} tokens, in `heldout.txt`, separated by blank lines). The byte-level BPE tokenizer
(Llama-3 split rules, {sh.vocab} tokens, Llama-3 special tokens and the 2B4T chat template) is
trained on the training documents.

## Training

Quantization-aware: absmean ternary weights and per-token absmax int8 activations in the forward
pass, straight-through gradients, float32 master weights. AdamW (betas 0.9/0.95, weight decay {wd}
on the projections), peak learning rate {lr:g}, {warmup} warmup steps then cosine decay to 10%,
batch {batch} × {sh.ctx} tokens, {r.steps} steps ({r.steps * batch * sh.ctx / 1e6:.1f}M tokens, seed {seed}),
{r.seconds / 60:.1f} minutes on 2 CPU threads (torch {torch.__version__}).

| | loss (nats/token) | perplexity |
|---|---|---|
| train (last 20 batches) | {r.train_loss:.4f} | {math.exp(r.train_loss):.1f} |
| held-out, training module | {r.heldout_ours:.4f} | {math.exp(r.heldout_ours):.1f} |
| held-out, transformers `BitNetForCausalLM` on these files | {r.heldout_hf:.4f} | {math.exp(r.heldout_hf):.1f} |

Reproduce (same Python version and torch, 2 threads):

```
{command}
```

## Sample

Greedy continuation (transformers) of the prompt after `<|begin_of_text|>`:

```
{r.sample}
```
"""
    (out / "README.md").write_text(card, encoding="utf-8")


@click.command()
@click.option("--outdir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the checkpoint into (e.g. models/bitnet-tiny).")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (default: as many as --max-minutes allows).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Wall-clock budget for the training loop; stops early when spent.")
@click.option("--hidden", default=384, show_default=True, help="Hidden size (multiple of 128).")
@click.option("--layers", default=4, show_default=True)
@click.option("--heads", default=6, show_default=True)
@click.option("--kv-heads", default=3, show_default=True)
@click.option("--ffn", default=1024, show_default=True, help="FFN size (multiple of 128).")
@click.option("--vocab", default=4096, show_default=True)
@click.option("--ctx", default=256, show_default=True, help="Training context = max_position_embeddings.")
@click.option("--batch", default=8, show_default=True, help="Sequences per step.")
@click.option("--lr", default=3e-3, show_default=True, help="Peak learning rate.")
@click.option("--warmup", default=50, show_default=True, help="Linear warmup steps.")
@click.option("--weight-decay", default=0.05, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=2, show_default=True, help="torch CPU threads.")
@click.option("--eval-every", default=0, show_default=True, help="Held-out evaluation every N steps (0: only at the end).")
@click.option("--sample-prompt", default="Return the number of", show_default=True)
@click.option("--compile/--no-compile", "compile_model", default=True, show_default=True,
              help="torch.compile the training step (faster after a minute of compiling).")
def main(outdir, steps, max_minutes, hidden, layers, heads, kv_heads, ffn, vocab, ctx, batch, lr, warmup,
         weight_decay, seed, threads, eval_every, sample_prompt, compile_model):
    """Quantization-aware training of a small BitNet b1.58 model on Python's documentation."""
    if steps is None and max_minutes is None:
        raise click.ClickException("give --steps, --max-minutes or both")
    sh = Shape(hidden, layers, heads, kv_heads, ffn, vocab, ctx)
    sh.check()
    torch.set_num_threads(threads)
    ctx_obj = click.get_current_context()
    args = [f"--outdir={outdir}"] + [
        f"--{name.replace('_', '-')}={value}" for name, value in ctx_obj.params.items()
        if name not in ("outdir", "steps", "max_minutes", "compile_model")
        and ctx_obj.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
    ]
    r = train(outdir, sh, steps, max_minutes, batch, lr, warmup, weight_decay, seed, eval_every, sample_prompt,
              "python utils/train_tiny_model.py " + shlex.join(args), compile_model)
    click.echo(json.dumps({k: v for k, v in asdict(r).items() if k != "sample"}))


if __name__ == "__main__":
    run_cli(main)
