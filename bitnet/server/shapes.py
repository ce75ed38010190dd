"""OpenAI's response objects, built in one place for the HTTP server (app.py) and for
BitNetModel.create_completion / create_chat_completion: the same request gives the same dicts
through either.

``completion_head`` / ``chat_head`` start a response (id, created, model); the other functions
add the choices for one chunk of a stream or for the whole answer.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from bitnet.server.scheduler import Finished


def model_id(path: Path) -> str:
    """The name the server answers to: the model's folder for the converter's ggml-model-*.gguf
    files (models/bitnet-tiny/ggml-model-i2_s.gguf -> bitnet-tiny), else the file name's stem."""
    path = Path(path)
    return path.parent.resolve().name if path.name.startswith("ggml-model-") else path.stem


def usage(*fins: Finished) -> dict:
    """The usage of one answer, or of the answers to a list of prompts together (as OpenAI sums it)."""
    prompt, completion = sum(f.prompt_tokens for f in fins), sum(f.completion_tokens for f in fins)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(f.cached_tokens for f in fins)}}


def completion_head(model_id: str) -> dict:
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": model_id, "system_fingerprint": None}


def completion_chunk(head: dict, text: str | None, finish: str | None, index: int = 0) -> dict:
    """A chunk of a streamed completion; index: which prompt of a list it answers."""
    return head | {"choices": [{"text": text or "", "index": index, "logprobs": None, "finish_reason": finish}]}


def completion(head: dict, text: str, fin: Finished) -> dict:
    return completions(head, [(text, fin)])


def completions(head: dict, answers: list[tuple[str, Finished]]) -> dict:
    """The whole answer to a list of prompts: a choice per prompt, in order, and their usage summed."""
    return head | {"choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": fin.reason}
                               for i, (text, fin) in enumerate(answers)],
                   "usage": usage(*(fin for _, fin in answers))}


def chat_head(model_id: str) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model_id, "system_fingerprint": None}


def chat_chunk(head: dict, text: str | None, finish: str | None, delta: dict | None = None) -> dict:
    """A chunk of a streamed chat answer: its text (None: no content) or the given delta."""
    if delta is None:
        delta = {"content": text} if text is not None else {}
    return head | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def chat_first_chunk(head: dict) -> dict:
    """The chunk that opens a streamed chat answer: the assistant's role."""
    return chat_chunk(head, None, None, delta={"role": "assistant", "content": ""})


def chat_completion(head: dict, text: str, fin: Finished) -> dict:
    return head | {"object": "chat.completion", "usage": usage(fin), "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
         "finish_reason": fin.reason}]}


def usage_chunk(head_chunk: dict, *fins: Finished) -> dict:
    """The last chunk of a stream with stream_options.include_usage: no choices, the usage."""
    return head_chunk | {"choices": [], "usage": usage(*fins)}
