"""Generators of C++ kernels specialized for a model's shapes (TL1/TL2)."""
