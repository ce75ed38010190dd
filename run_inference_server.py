#!/usr/bin/env python3
"""Serve a converted BitNet model over an OpenAI-compatible HTTP API.

    python run_inference_server.py                              # the model that ships in models/
    python run_inference_server.py -m models/BitNet-b1.58-2B-4T/ggml-model-i2_s.gguf -t 4 --parallel 4

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (JSON or server-sent
events), GET /health, GET /metrics (Prometheus). The flags -m -p -n -t -c --temperature --host
--port are bitnet.cpp's run_inference_server.py flags. Requests run together, joining and leaving
the running batch between engine steps (bitnet/server/); up to --parallel at once, up to
--queue-size more wait, the rest get 503. Bodies, request heads and open connections are bounded in
size and time (--max-body-size, --body-timeout, --max-header-size, --header-timeout,
--max-connections). The model is read into memory at start (--mmap maps it instead), so the file
may be replaced while the server runs; a change is logged. The engine library comes from build/
(BITNET_BUILD_DIR overrides it).
"""

from __future__ import annotations

from pathlib import Path

import click

from bitnet.common import DEFAULT_MODEL, BitnetError, default_threads, run_cli, threads_option



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_MODEL,
              show_default="the shipped model's ggml-model-i2_s.gguf", help="GGUF model file.")
@click.option("-p", "--prompt", "system_prompt", default=None,
              help="System prompt put first in chats whose messages have none.")
@click.option("-n", "--n-predict", type=click.IntRange(min=-1), default=-1, show_default=True,
              help="Default max_tokens of a request (-1: until end of text or full context).")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=default_threads, callback=threads_option,
              show_default="the CPUs this process may use", help="Number of CPU threads.")
@click.option("-c", "--ctx-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Context of each slot in tokens, prompt and answer together (0: the model's training "
                   "context, at most 4096; a larger one is warned about).")
@click.option("--temperature", "-temp", type=click.FloatRange(min=0, max=2), default=0.8, show_default=True,
              help="Default sampling temperature of a request (0: greedy).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; then set --api-key).")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=8080, show_default=True,
              help="Port to listen on.")
@click.option("--parallel", "-np", type=click.IntRange(min=1), default=4, show_default=True,
              help="Slots: requests generated at the same time.")
@click.option("--queue-size", type=click.IntRange(min=0), default=64, show_default=True,
              help="Requests that may wait for a slot; more get 503.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Most prompt tokens evaluated per engine step (longer prompts go in chunks, between "
                   "the other requests' tokens).")
@click.option("--api-key", envvar="BITNET_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on every endpoint but /health  [env: BITNET_API_KEY]")
@click.option("--max-body-size", type=click.IntRange(min=1), default=4 << 20, show_default=True,
              help="Most bytes of a request body; more gets 413.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a request body may take to arrive; then 408.")
@click.option("--max-header-size", type=click.IntRange(min=1024), default=16 << 10, show_default=True,
              help="Most bytes of a request's head (request line and headers); more gets 431.")
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a request's head may take to arrive (from connecting, or from the previous "
                   "answer on a kept-alive connection); then 408.")
@click.option("--max-connections", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most open connections; more are answered 503 and closed.")
@click.option("--mmap/--no-mmap", "use_mmap", default=False, show_default=True,
              help="Map the model file instead of reading it into memory at start. Starts faster, but then "
                   "the file must not be rewritten or truncated in place while the server runs (that changes "
                   "its answers, or kills it with SIGBUS); --no-mmap keeps serving the weights it read. A "
                   "change of the file is logged as a warning either way.")
@click.option("-ctk", "--cache-type-k", type=click.Choice(["f32", "f16", "q8_0"]), default="f32", show_default=True,
              help="KV cache type of the keys (f16 and q8_0 take 1/2 and about 1/4 of the memory).")
@click.option("-ctv", "--cache-type-v", type=click.Choice(["f32", "f16", "q8_0"]), default="f32", show_default=True,
              help="KV cache type of the values.")
@click.option("-fa", "--flash-attn", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="on: tiled attention; off: the exact attention in torch's summation order (needs -ctk f32 "
                   "-ctv f32).")
@click.option("--spec", type=click.Choice(["off", "ngram", "draft"]), default="off", show_default=True,
              help="Speculative decoding for every request: ngram drafts by lookup in the prompt and the text so "
                   "far, draft with the small model of -md. Greedy answers stay token for token the same; "
                   "sampled ones keep the model's distribution.")
@click.option("-md", "--model-draft", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draft model (implies --spec draft): a smaller GGUF with the same tokenizer.")
@click.option("--draft-max", type=click.IntRange(min=1), default=16, show_default=True,
              help="Most tokens drafted per step (the length adapts to the recent acceptance rate).")
@click.option("--draft-min", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fewest tokens a draft must have to be verified.")
@click.option("--draft-p-min", type=click.FloatRange(min=0, max=1), default=0.75, show_default=True,
              help="--spec draft: stop drafting when the draft model's top probability falls below this.")
@click.option("--spec-ngram-min", type=click.IntRange(min=1), default=2, show_default=True,
              help="--spec ngram: shortest n-gram looked up.")
@click.option("--spec-ngram-max", type=click.IntRange(min=1), default=4, show_default=True,
              help="--spec ngram: longest n-gram looked up.")
def main(model: Path, system_prompt: str | None, n_predict: int, threads: int, ctx_size: int,
         temperature: float, host: str, port: int, parallel: int, queue_size: int, batch_size: int,
         api_key: str | None, max_body_size: int, body_timeout: float, max_header_size: int,
         header_timeout: float, max_connections: int, use_mmap: bool, cache_type_k: str, cache_type_v: str,
         flash_attn: str, spec: str, model_draft: Path | None, draft_max: int, draft_min: int,
         draft_p_min: float, spec_ngram_min: int, spec_ngram_max: int) -> None:
    """Serve a converted BitNet model over an OpenAI-compatible HTTP API."""
    from bitnet.server.http import ConnectionLimits
    from bitnet.server.serve import serve

    if api_key is not None and not api_key.strip():
        raise click.BadParameter("the API key is empty", param_hint="--api-key")
    if model_draft is not None and spec == "off":
        spec = "draft"  # as bitnet-cli and llama-server: a draft model means draft speculation
    if spec == "draft" and model_draft is None:
        raise BitnetError("--spec draft needs a draft model: give -md FILE")
    if spec == "ngram" and model_draft is not None:
        raise BitnetError("-md is the draft model of --spec draft, not of --spec ngram")
    if draft_min > draft_max:
        raise BitnetError("needs --draft-min <= --draft-max")
    if spec_ngram_min > spec_ngram_max:
        raise BitnetError("n-gram sizes need --spec-ngram-min <= --spec-ngram-max")
    speculation = None if spec == "off" else {
        "mode": spec, "draft_max": draft_max, "draft_min": draft_min, "draft_p_min": draft_p_min,
        "ngram_min": spec_ngram_min, "ngram_max": spec_ngram_max}
    serve(model, host=host, port=port, threads=threads, ctx_size=ctx_size, parallel=parallel,
          queue_size=queue_size, batch_size=batch_size, n_predict=n_predict, temperature=temperature,
          system_prompt=system_prompt, api_key=api_key, max_body_size=max_body_size, body_timeout=body_timeout,
          limits=ConnectionLimits(max_connections=max_connections, header_timeout=header_timeout,
                                  max_header_size=max_header_size),
          use_mmap=use_mmap, type_k=cache_type_k, type_v=cache_type_v, flash_attn=flash_attn == "on",
          speculation=speculation, draft_path=model_draft)


if __name__ == "__main__":
    run_cli(main)
