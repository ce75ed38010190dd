"""Conversion of Hugging Face checkpoints to GGUF: the model (hf) and its tokenizer (vocab)."""
