// Token tiling shared by the SIMD matmuls of every ISA (included by each ISA's source, so it is
// compiled with that ISA's flags and inlined into its kernels).
//
// Rows of W are visited once per chunk of tokens whose activations fit in about 256 KiB (a safe
// share of a 512 KiB..2 MiB L2), and each row is dotted with up to 4 tokens at a time, so the
// weights a row unpacks are reused across those tokens while the activations stay in cache.
// With one token every weight is read exactly once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bitnet {

constexpr int kTokenTile = 4;

inline int64_t token_chunk(int64_t act_row_bytes) {
    const int64_t n = (256 * 1024) / std::max<int64_t>(act_row_bytes, 1);
    return std::max<int64_t>(kTokenTile, n / kTokenTile * kTokenTile);
}

// out[n*ldo + m] = dot(row m, token n) for m in [m0, m1), n in [0, N).
// row(m) gives row m's weights; dot(std::integral_constant<int, NT>, row, n, res) writes the
// products of that row with tokens n..n+NT-1 into res[0..NT).
template <typename Out, typename RowFn, typename DotFn>
inline void tiled_gemm(int64_t N, int64_t m0, int64_t m1, int64_t act_row_bytes, RowFn row,
                       DotFn dot, Out* out, int64_t ldo) {
    const int64_t chunk = token_chunk(act_row_bytes);
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t n1 = std::min(N, n0 + chunk);
        for (int64_t m = m0; m < m1; ++m) {
            const auto* r = row(m);
            Out res[kTokenTile];
            int64_t n = n0;
            for (; n + kTokenTile <= n1; n += kTokenTile) {
                dot(std::integral_constant<int, kTokenTile>{}, r, n, res);
                for (int t = 0; t < kTokenTile; ++t) out[(n + t) * ldo + m] = res[t];
            }
            const int rest = (int)(n1 - n);
            if (rest == 3) dot(std::integral_constant<int, 3>{}, r, n, res);
            if (rest == 2) dot(std::integral_constant<int, 2>{}, r, n, res);
            if (rest == 1) dot(std::integral_constant<int, 1>{}, r, n, res);
            for (int t = 0; t < rest; ++t) out[(n + t) * ldo + m] = res[t];
        }
    }
}

}  // namespace bitnet
