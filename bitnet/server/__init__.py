"""The OpenAI-compatible server behind run_inference_server.py, in three layers:

- ``engine``: ``BatchEngine``, a batch of sequence slots advanced one forward step at a time, and
  ``SlotEngine``, which runs each step as one multi-sequence forward pass of the engine;
- ``scheduler``: continuous batching on one thread that owns the engine (queue, slots, prompt
  chunks, sampling, stop strings, counters);
- ``prompt``: prompt text to tokens (the size bound against the context; chats in which only the
  template's own markers become special tokens);
- ``app``: the FastAPI application (OpenAI endpoints, errors, Prometheus metrics, API key, body
  limits);
- ``http``: uvicorn's h11 protocol with limits on request heads and open connections;
- ``watch``: a warning when the model file changes on disk while it is served.
"""
