#!/usr/bin/env python3
"""Run a converted BitNet model: generate text from a prompt with the engine's bitnet-cli, or chat.

    python run_inference.py -p "Create a new" -n 64              # the model that ships in models/
    python run_inference.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -p "..." -t 4
    python run_inference.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -p "You are a helpful assistant" -cnv

The flags are bitnet.cpp's run_inference.py flags; they are passed on to build/bin/bitnet-cli
(``BITNET_BUILD_DIR`` overrides build/), whose output streams straight to this terminal (text on
stdout, speeds on stderr). The exit code is bitnet-cli's. With -cnv, -p is the system prompt and
the chat runs on the Python package (bitnet/repl.py: BitNetModel.chat, with prompt_toolkit's line
editing on a terminal); Ctrl-C stops an answer, and at the prompt it quits.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from bitnet.common import (DEFAULT_MODEL, DEFAULT_PROMPT, BitnetError, default_threads, display_path, engine_tool,
                          run_cli, run_tool)

def _check_model(model: Path) -> None:
    if not model.is_file():
        raise BitnetError(f"model file {display_path(model)} not found: run python setup_env.py "
                          "(or setup_env.py --model-dir DIR / --hf-repo REPO)")


def chat(model: Path, system_prompt: str, n_predict: int, threads: int, ctx_size: int, temperature: float,
         seed: int | None, chat_template: str | None, cache: dict[str, str], use_mmap: bool = True) -> int:
    """The -cnv chat on this terminal (or piped input), with bitnet-cli's sampling defaults."""
    from bitnet.errors import InvalidArgumentError
    from bitnet.model import BitNetModel, GenerationConfig
    from bitnet.repl import run_chat

    _check_model(model)
    if n_predict == 0:
        raise click.UsageError("-n 0 leaves no room for answers: give -n N > 0, or -1 for answers until the end of the turn")
    config = GenerationConfig(max_new_tokens=None if n_predict < 0 else n_predict, do_sample=temperature > 0,
                              temperature=temperature, top_k=40, top_p=0.95, min_p=0.05, seed=seed)
    try:
        with warnings.catch_warnings(record=True) as caught:  # the engine's warnings, as one line each
            warnings.simplefilter("always")
            loaded = BitNetModel(model, n_threads=threads, context_length=ctx_size, chat_template=chat_template,
                                 type_k=cache.get("-ctk", "f32"), type_v=cache.get("-ctv", "f32"),
                                 flash_attn=cache.get("-fa", "on") == "on", use_mmap=use_mmap)
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
    except InvalidArgumentError as e:
        raise BitnetError(f"--chat-template: {e}" if "chat template" in str(e) else str(e)) from None
    with loaded:
        if loaded.chat_template_name is None:
            raise BitnetError("the model has no chat template this engine recognizes: pass --chat-template NAME "
                              "(bitnet, llama3, falcon3, chatml)")
        return run_chat(loaded, system_prompt, config)


def cli_command(model: Path, prompt: str, n_predict: int, threads: int, ctx_size: int,
                temperature: float, seed: int | None, conversation: bool = False,
                chat_template: str | None = None, cache: dict[str, str] | None = None,
                use_mmap: bool = True, special: bool = False,
                spec: dict[str, str] | None = None) -> list[str]:
    """The bitnet-cli command line for these settings (``conversation``: chat mode, ``prompt`` being
    the system prompt; ``cache``: bitnet-cli's -ctk/-ctv/-fa values by flag, those given;
    ``use_mmap`` False: --no-mmap; ``special``: control tokens shown as text; ``spec``: the
    speculative-decoding flags, those given). Raise
    ``BitnetError`` when the engine is not built or the model file does not exist."""
    cli = engine_tool("bitnet-cli")
    _check_model(model)
    cmd = [str(cli), "-m", str(model), "-p", prompt, "-n", str(n_predict), "-t", str(threads),
           "-c", str(ctx_size), "--temp", repr(temperature)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if conversation:
        cmd.append("-cnv")
    if chat_template is not None:
        cmd += ["--chat-template", chat_template]
    for flag, value in (cache or {}).items():
        cmd += [flag, value]
    if not use_mmap:
        cmd.append("--no-mmap")
    if special:
        cmd.append("--special")
    for flag, value in (spec or {}).items():  # speculative decoding: bitnet-cli's flags, those given
        cmd += [flag, value]
    return cmd


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL,
              show_default="the shipped model's ggml-model-i2_s.gguf", help="GGUF model file.")
@click.option("-p", "--prompt", default=None,
              help=f"Prompt to continue; with -cnv, the system prompt  [default: '{DEFAULT_PROMPT}'; "
                   "with -cnv, none]")
@click.option("-n", "--n-predict", type=click.IntRange(min=-1), default=128, show_default=True,
              help="Number of tokens to generate (-1: until end of text or full context).")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=default_threads,
              show_default="the CPUs this process may use",
              help="Number of CPU threads (more than the usable CPUs: bitnet-cli warns; over 4 per CPU: refused).")
@click.option("-c", "--ctx-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Context size in tokens, prompt included (0: the model's training context, at most "
                   "4096; a larger one is warned about).")
@click.option("-temp", "--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="Sampling temperature (0: greedy).")
@click.option("--seed", type=int, default=None,
              help="Random seed for sampling  [default: a random one]")
@click.option("-cnv", "--conversation", is_flag=True,
              help="Chat: -p is the system prompt, each line typed is a user turn; /exit, Ctrl-D or Ctrl-C "
                   "at the prompt quits, Ctrl-C during an answer stops it. When the chat outgrows the "
                   "context, its oldest turns are dropped (the system prompt is kept).")
@click.option("--chat-template", metavar="NAME",
              help="Chat format for -cnv: bitnet, llama3, falcon3 or chatml  [default: recognized from "
                   "the model]")
@click.option("-ctk", "--cache-type-k", type=click.Choice(["f32", "f16", "q8_0"]),
              help="KV cache type of the keys  [default: f32]")
@click.option("-ctv", "--cache-type-v", type=click.Choice(["f32", "f16", "q8_0"]),
              help="KV cache type of the values  [default: f32]")
@click.option("-fa", "--flash-attn", type=click.Choice(["on", "off"]),
              help="on: tiled attention; off: the exact attention (torch's order, needs f32 K and V)  "
                   "[default: on]")
@click.option("--mmap/--no-mmap", "use_mmap", default=True, show_default=True,
              help="Map the model file (a fast start; the file must not change while it runs) or read it "
                   "into memory.")
@click.option("--special", is_flag=True,
              help="Show control tokens (<|end_of_text|>, ...) as text; by default they are left out.")
@click.option("--spec", type=click.Choice(["off", "ngram", "draft"]),
              help="Speculative decoding (same output, fewer forward passes): ngram guesses from the prompt "
                   "and the text so far, draft from a draft model (-md)  [default: off]")
@click.option("-md", "--model-draft", type=click.Path(dir_okay=False, path_type=Path),
              help="Draft model for --spec draft: a smaller GGUF with the same vocabulary.")
@click.option("--draft-max", type=click.IntRange(min=0), help="Most guesses verified per forward pass  [default: 16]")
@click.option("--draft-min", type=click.IntRange(min=0), help="Fewer guesses than this are not verified  [default: 0]")
@click.option("--draft-p-min", type=click.FloatRange(0, 1),
              help="Draft model: stop guessing below this probability  [default: 0.75]")
@click.option("--spec-ngram-min", type=click.IntRange(min=1), help="Shortest n-gram looked up  [default: 2]")
@click.option("--spec-ngram-max", type=click.IntRange(min=1), help="Longest n-gram looked up  [default: 4]")
def main(model: Path, prompt: str | None, n_predict: int, threads: int, ctx_size: int, temperature: float,
         seed: int | None, conversation: bool, chat_template: str | None, cache_type_k: str | None,
         cache_type_v: str | None, flash_attn: str | None, use_mmap: bool, special: bool, spec: str | None,
         model_draft: Path | None, draft_max: int | None, draft_min: int | None, draft_p_min: float | None,
         spec_ngram_min: int | None, spec_ngram_max: int | None) -> int:
    """Generate text from a prompt, or chat (-cnv), with a converted BitNet model."""
    if chat_template is not None and not conversation:
        raise click.UsageError("--chat-template only applies to chat mode: add -cnv")
    if prompt is None:
        prompt = "" if conversation else DEFAULT_PROMPT
    cache = {f: v for f, v in (("-ctk", cache_type_k), ("-ctv", cache_type_v), ("-fa", flash_attn)) if v}
    speculation = {f: str(v) for f, v in (("--spec", spec), ("-md", model_draft), ("--draft-max", draft_max),
                                          ("--draft-min", draft_min), ("--draft-p-min", draft_p_min),
                                          ("--spec-ngram-min", spec_ngram_min),
                                          ("--spec-ngram-max", spec_ngram_max)) if v is not None}
    if conversation and speculation:
        raise click.UsageError("speculative decoding (--spec, -md, --draft-*) applies to completion, not yet to -cnv")
    if conversation:
        return chat(model, prompt, n_predict, threads, ctx_size, temperature, seed, chat_template, cache, use_mmap)
    cmd = cli_command(model, prompt, n_predict, threads, ctx_size, temperature, seed, conversation,
                      chat_template, cache, use_mmap, special, speculation)
    return run_tool(cmd, "bitnet-cli")


if __name__ == "__main__":
    run_cli(main)
