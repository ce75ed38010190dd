"""Runs the server: loads the model, builds the engine, the scheduler and the application, and
serves them with uvicorn until Ctrl-C (or SIGTERM).

On shutdown the scheduler is closed before uvicorn waits for open connections: every running or
waiting request then ends at once (a stream with an error event, a plain request with a 500), so
stopping the server never hangs on a long generation.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import warnings
from pathlib import Path

import click
import uvicorn

from bitnet.bindings import BitnetError as EngineError
from bitnet.bindings import Model, Sampler, default_library_path
from bitnet.common import BitnetError, build_dir, display_path
from bitnet.server.app import ServerConfig, create_app, model_id
from bitnet.server.engine import SlotEngine
from bitnet.server.http import ConnectionLimits, limited_protocol
from bitnet.server.scheduler import Scheduler
from bitnet.server.watch import ModelFileWatch


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, scheduler: Scheduler):
        super().__init__(config)
        self.scheduler = scheduler

    async def shutdown(self, sockets=None) -> None:
        await asyncio.to_thread(self.scheduler.close)  # ends every request, so connections close
        await super().shutdown(sockets)


def uvicorn_config(app, host: str, port: int, limits: ConnectionLimits, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's settings for the app: the connection limits, and the server's own log lines
    ("bitnet.server") printed like uvicorn's."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["bitnet"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=log_config,
                          timeout_graceful_shutdown=5, http=limited_protocol(limits),
                          h11_max_incomplete_event_size=limits.max_header_size)


def listen_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound to host:port (as uvicorn binds it) before the model loads, so a
    port in use is one error line at once rather than uvicorn's failure after start-up."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise BitnetError(f"cannot listen on {host}:{port}: {e.strerror or e}; another server may be using the "
                          "port: stop it or choose another with --port") from None
    return sock


def serve(model_path: Path, *, host: str, port: int, threads: int, ctx_size: int, parallel: int,
          queue_size: int, batch_size: int, n_predict: int, temperature: float, system_prompt: str | None,
          api_key: str | None, max_body_size: int = 4 << 20, body_timeout: float = 30.0,
          limits: ConnectionLimits = ConnectionLimits(), log_level: str = "info", use_mmap: bool = False,
          type_k: str = "f32", type_v: str = "f32", flash_attn: bool = True, speculation: dict | None = None,
          draft_path: Path | None = None) -> None:
    """Serves model_path on host:port until interrupted. ctx_size: tokens per slot (0: the model's
    training context, at most 4096; a note when capped, a warning when ctx_size exceeds it);
    n_predict: default max_tokens (-1: none); batch_size: most prompt tokens per engine step;
    max_body_size, body_timeout: a request body's bytes and seconds; limits: the connections';
    use_mmap: map the model file instead of reading it into memory (see watch.py for what a change
    of the file then does); type_k, type_v, flash_attn: the KV cache and attention; speculation:
    bindings.Speculator's options for every request (None: off), draft_path the draft model's file
    for mode "draft". Raises
    BitnetError when the engine is not built, host:port cannot be bound or the model cannot be
    loaded."""
    lib = default_library_path()
    if not lib.is_file():
        raise BitnetError(f"the engine is not built ({display_path(lib)} is missing): run python setup_env.py")
    if not model_path.is_file():
        raise BitnetError(f"model file {display_path(model_path)} not found: run python setup_env.py "
                          "(or setup_env.py --model-dir DIR / --hf-repo REPO)")
    if draft_path is not None and not draft_path.is_file():
        raise BitnetError(f"draft model file {display_path(draft_path)} not found")
    sock = listen_socket(host, port)
    watch = ModelFileWatch(model_path, use_mmap)  # before loading: a change during the load counts
    try:
        model = Model(model_path, library=lib, use_mmap=use_mmap)
        # The bindings warn about a context past the training one: on the log, in the tools' words.
        with warnings.catch_warnings(record=True) as context_warnings:
            warnings.simplefilter("always")
            engine = SlotEngine(model, n_slots=parallel, n_ctx=ctx_size, n_threads=threads, n_batch=batch_size,
                                type_k=type_k, type_v=type_v, flash_attn=flash_attn)
        if speculation is not None:
            if draft_path is not None:
                speculation = {**speculation, "draft_model": Model(draft_path, library=lib, use_mmap=use_mmap)}
            # Built once now so that a draft model the engine refuses (another tokenizer) is one
            # error line at start, not a failure of every request.
            engine.speculator(model, Sampler(temperature=0), **speculation).close()
    except EngineError as e:
        sock.close()
        raise BitnetError(str(e)) from None
    for w in context_warnings:
        click.echo(f"warning: {w.message}", err=True)
    if ctx_size == 0 and model.n_ctx_train > engine.n_ctx:
        click.echo(f"note: context {engine.n_ctx} tokens, capped from the model's training context of "
                   f"{model.n_ctx_train}; ask for more with -c", err=True)
    scheduler = Scheduler(engine, model, batch_size=batch_size, queue_size=queue_size, speculation=speculation)
    app = create_app(ServerConfig(model=model, model_path=model_path, scheduler=scheduler,
                                  default_max_tokens=None if n_predict < 0 else n_predict,
                                  default_temperature=temperature, system_prompt=system_prompt,
                                  api_key=api_key, max_body_size=max_body_size, body_timeout=body_timeout,
                                  watch=watch))
    click.echo(f"serving {model.desc} as '{model_id(model_path)}' on http://{host}:{port}/v1: {parallel} slots "
               f"of {engine.n_ctx} tokens, {threads} threads, engine {display_path(build_dir())}"
               + ("" if speculation is None else f", speculation {speculation['mode']}"), err=True)
    if use_mmap:
        click.echo("note: --mmap: the weights are read from the model file itself while serving; do not "
                   "rewrite or truncate it in place (that changes the answers or kills the server)", err=True)
    server = _Server(uvicorn_config(app, host, port, limits, log_level), scheduler)
    scheduler.start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises Ctrl-C again once it has shut down cleanly
        pass
    finally:
        sock.close()
        scheduler.close()
        engine.close()
        model.close()
        if speculation is not None and speculation.get("draft_model") is not None:
            speculation["draft_model"].close()
