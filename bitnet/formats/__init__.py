"""Tensor formats written into GGUF files: I2_S (ternary), TL1/TL2 (lookup-table), the block quants, and a small GGUF reader."""
