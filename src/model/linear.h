// BitLinear and float linear layers: a weight tensor bound from a GGUF file, the per-token int8
// quantization of activations, and the threaded matrix products over the kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "gguf/gguf.h"

namespace bitnet {

struct Context;

// A weight matrix W[out][in] stored in the file (ne = [in, out]).
struct Linear {
    const GGUFTensor* t = nullptr;
    uint32_t type = 0;
    int64_t in = 0, out = 0;
    const uint8_t* data = nullptr;
    // I2_S, TL1, TL2: the per-tensor magnitude stored after the packed codes. TQ1_0/TQ2_0 whose blocks all
    // have the same d: that d, and the matmul runs exactly as I2_S with this scale.
    float scale = 1.0f;
    float divisor = 1.0f;       // what the reference divides by (1/scale, or exact from the file)
    bool block_scales = false;  // TQ1_0/TQ2_0 with different d per block: float block sums
};

// Activations of a batch, quantized per token to int8 for the ternary matmuls. Rows are ldq =
// k rounded up to a multiple of 128 apart, zero past k, so that I2_S rows padded to whole blocks
// (see I2S_BLOCK) see zeros there.
struct QuantBatch {
    std::vector<int8_t> q;       // (n, ldq)
    std::vector<float> scale;    // (n)   127 / absmax
    std::vector<int32_t> qsum;   // (n)
    int64_t n = 0, k = 0, ldq = 0;
};

// Binds tensor t (ne = [in, out]) as a Linear. `ternary`: the tensor holds a BitLinear's weights
// (I2_S with any `in`, TL1/TL2 in this build's layout (the file's `bitnet.tl.bm`, see
// kernels/tl.h), TQ1_0, TQ2_0, or F16/F32 already multiplied by their scale); otherwise a float
// matrix (embedding, output: F32, F16, Q8_0, Q6_K, Q4_0). Throws bitnet::Error naming the tensor
// for a type that cannot be used there, and for a TL file of another layout (with the command
// that converts it again).
Linear bind_linear(const GGUFFile& f, const GGUFTensor& t, bool ternary);

// out(n, lin.out) = BitLinear(lin)(x) for activations already quantized in qb.
void linear_forward(Context& ctx, const Linear& lin, const QuantBatch& qb, float* out);

}  // namespace bitnet
