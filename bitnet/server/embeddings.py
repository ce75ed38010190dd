"""``POST /v1/embeddings`` in OpenAI's format, for embedding models (bitnet-embedding-0.6b).

Input: a text, a list of texts, token ids, or a list of token-id lists (each text tokenized as
bindings.Model.embedding_tokens says: EOS appended when the model pools the last token).
``encoding_format`` float (lists of numbers) or base64 (the little-endian float32 bytes, as the
openai client decodes them); ``dimensions``: the first N components, L2-normalized again (the
Matryoshka truncation Qwen3-based embedding models are trained for), at most the model's width.

The texts of a request run together through the engine (multi-sequence batches, see
bitnet_embed) in a context of their own, one request at a time, on a worker thread; generation
requests keep their own contexts meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bitnet.bindings import Context, Model

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
SEQ_PER_BATCH = 8  # texts per forward pass: each weight read once for all of them

TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class EmbeddingBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    model: str | None = None
    input: (str | TokenIds | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
            | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)])
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None


class EmbeddingInputError(ValueError):
    """Bad input, with the OpenAI parameter it names (app.py answers it as a 400)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class Embedder:
    """Embeddings of one request at a time over a Model shared with the generation scheduler."""

    def __init__(self, model: Model, n_threads: int = 0, n_ctx_max: int = 0):
        self.model, self.n_threads = model, n_threads
        self.n_ctx_max = n_ctx_max or model.n_ctx_train
        self._lock = threading.Lock()

    def token_lists(self, body: EmbeddingBody) -> list[list[int]]:
        """The request's inputs as token lists, checked. Raises EmbeddingInputError."""
        one = isinstance(body.input, str) or isinstance(body.input[0], int)
        inputs = [body.input] if one else body.input
        if self.model.pooling == "none":
            raise EmbeddingInputError("this model is not an embedding model (it names no pooling): serve an "
                                      "embedding model such as bitnet-embedding-0.6b", "model")
        out = []
        for i, item in enumerate(inputs):
            param = "input" if one else f"input[{i}]"
            ids = self.model.embedding_tokens(item) if isinstance(item, str) else list(item)
            bad = [t for t in ids if t >= self.model.n_vocab]
            if bad:
                raise EmbeddingInputError(f"{param}: token id {bad[0]} is out of the vocabulary "
                                          f"(0..{self.model.n_vocab - 1})", param)
            if len(ids) > self.n_ctx_max:
                raise EmbeddingInputError(f"{param} is {len(ids)} tokens, more than the model's context of "
                                          f"{self.n_ctx_max}: shorten it", param)
            out.append(ids)
        return out

    def embed(self, tokens: list[list[int]]) -> np.ndarray:
        with self._lock, Context(self.model, n_ctx=max(map(len, tokens)), n_threads=self.n_threads,
                                 n_batch=2048, n_seq_max=min(SEQ_PER_BATCH, len(tokens))) as ctx:
            return ctx.embed(tokens)

    async def respond(self, body: EmbeddingBody, model_id: str) -> dict:
        """OpenAI's embeddings list for the request. Raises EmbeddingInputError."""
        tokens = await asyncio.to_thread(self.token_lists, body)
        width = self.model.n_embd
        if body.dimensions is not None and body.dimensions > width:
            raise EmbeddingInputError(f"dimensions {body.dimensions} is more than the model's {width}", "dimensions")
        vecs = await asyncio.to_thread(self.embed, tokens)
        if body.dimensions is not None and body.dimensions < width:
            vecs = vecs[:, :body.dimensions]
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        n = sum(map(len, tokens))
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                     for i, v in enumerate(vecs)],
            "model": model_id,
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }


def _encode(v: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()
    return [float(x) for x in v]
