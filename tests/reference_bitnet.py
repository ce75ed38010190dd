"""An independent torch reference for 1bitLLM's BitNet b1.58 models (bitnet_b1_58-large / -3B).

Transformers has no class for this architecture: the checkpoints ship their own modeling code
(`BitnetForCausalLM` in modeling_bitnet.py, `BitLinear` in utils_quant.py, loaded with
trust_remote_code), and transformers' own `BitNetForCausalLM` is the different 2B4T design
(relu², sub-norms named attn_sub_norm / ffn_sub_norm). This module re-implements 1bitLLM's
published forward pass, in float32, from the checkpoint's config.json and safetensors:

  * a Llama decoder (RMSNorm pre-norms, rotate_half RoPE, causal softmax attention, SiLU-gated
    MLP) whose q/k/v/o/gate/up/down projections are BitLinear layers;
  * the two sub-norms: `self_attn.inner_attn_ln` (RMSNorm over the attention output, before
    o_proj) and `mlp.ffn_layernorm` (RMSNorm over act(gate)·up, before down_proj);
  * BitLinear as utils_quant.py writes it: weights ternarized per tensor with absmean
    (s = 1/mean|W|, round(W·s) clamped to [-1, 1], divided by s again), activations quantized
    per token with absmax to int8 (s = 127/max|x|, round(x·s) clamped to [-128, 127], divided by
    s again), both passed through the straight-through form `x + (q(x) - x).detach()`, then a
    float matmul;
  * an unquantized lm_head (tied to the embedding unless the checkpoint has lm_head.weight).

It shares no code with the converter or the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def weight_quant(w: torch.Tensor) -> torch.Tensor:
    s = 1 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1) / s


def activation_quant(x: torch.Tensor) -> torch.Tensor:
    s = 127 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


def bit_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    qx = x + (activation_quant(x) - x).detach()
    qw = w + (weight_quant(w) - w).detach()
    return F.linear(qx, qw)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class BitnetReference:
    """1bitLLM's BitnetForCausalLM forward in float32. Call with token ids [T] -> logits [T, V]."""

    def __init__(self, model_dir: str | Path):
        model_dir = Path(model_dir)
        cfg = json.loads((model_dir / "config.json").read_text())
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads") or self.heads
        self.head_dim = cfg["hidden_size"] // self.heads
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg.get("rope_theta", 10000.0)
        self.w = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def _attention(self, x: torch.Tensor, p: str) -> torch.Tensor:
        t, hd, w = x.shape[0], self.head_dim, self.w
        q = bit_linear(x, w[p + "q_proj.weight"]).view(t, self.heads, hd).transpose(0, 1)
        k = bit_linear(x, w[p + "k_proj.weight"]).view(t, self.kv_heads, hd).transpose(0, 1)
        v = bit_linear(x, w[p + "v_proj.weight"]).view(t, self.kv_heads, hd).transpose(0, 1)
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
        scores = q @ k.transpose(1, 2) / (hd**0.5)
        mask = torch.full((t, t), float("-inf")).triu(1)
        attn = torch.softmax(scores + mask, dim=-1) @ v
        attn = attn.transpose(0, 1).reshape(t, self.heads * hd)
        attn = rms_norm(attn, w[p + "inner_attn_ln.weight"], self.eps)
        return bit_linear(attn, w[p + "o_proj.weight"])

    def _mlp(self, x: torch.Tensor, p: str) -> torch.Tensor:
        w = self.w
        h = F.silu(bit_linear(x, w[p + "gate_proj.weight"])) * bit_linear(x, w[p + "up_proj.weight"])
        h = rms_norm(h, w[p + "ffn_layernorm.weight"], self.eps)
        return bit_linear(h, w[p + "down_proj.weight"])

    @torch.no_grad()
    def __call__(self, ids: list[int]) -> torch.Tensor:
        w = self.w
        h = w["model.embed_tokens.weight"][torch.tensor(ids)]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = h + self._attention(rms_norm(h, w[p + "input_layernorm.weight"], self.eps), p + "self_attn.")
            h = h + self._mlp(rms_norm(h, w[p + "post_attention_layernorm.weight"], self.eps), p + "mlp.")
        return F.linear(rms_norm(h, w["model.norm.weight"], self.eps), self.lm_head)

    def greedy(self, ids: list[int], n_new: int) -> tuple[list[int], list[torch.Tensor]]:
        """n_new greedy tokens after ids, and the logits each was chosen from (no KV cache: the
        whole sequence is recomputed per token, which is fine for tiny models)."""
        seq, scores = list(ids), []
        for _ in range(n_new):
            last = self(seq)[-1]
            scores.append(last)
            seq.append(int(last.argmax()))
        return seq[len(ids):], scores
