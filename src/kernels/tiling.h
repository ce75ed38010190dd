// Loop nests shared by the SIMD matmuls of every ISA (included by each ISA's source, so they are
// compiled with that ISA's flags and inlined into its kernels).
//
// tiled_gemm (float matmuls): rows of W are visited once per chunk of tokens whose activations fit
// in about 256 KiB (a safe share of a 512 KiB..2 MiB L2), and each row is dotted with up to 4
// tokens at a time, so the weights a row unpacks are reused across those tokens while the
// activations stay in cache. With one token every weight is read exactly once.
//
// tiled_gemm_2d (I2_S): register tiles of up to MR rows x NT tokens. A microkernel that holds
// MR x NT accumulators loads each weight vector once for NT tokens and each activation vector once
// for MR rows, which is what keeps an int8 dot-product unit busy instead of the load ports. Rows
// are taken in chunks whose packed weights stay in L2 while every token tile sweeps them; the NT
// activation rows of a tile stay in L1 across the whole chunk.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bitnet {
// Internal linkage: every ISA file compiles its own copy with its own flags (an inline function
// with external linkage could be merged with another ISA's copy by the linker).
namespace {

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

namespace tiling_detail {

// Calls f(integral_constant<A>, integral_constant<B>) for the runtime a in [1, A], b in [1, B]:
// every edge-tile shape becomes its own fully unrolled instantiation.
template <int A, int B, typename F>
inline void with_tile(int a, int b, F&& f) {
    if constexpr (A > 1) {
        if (a < A) return with_tile<A - 1, B>(a, b, f);
    }
    if constexpr (B > 1) {
        if (b < B) return with_tile<A, B - 1>(a, b, f);
    }
    f(std::integral_constant<int, A>{}, std::integral_constant<int, B>{});
}

}  // namespace tiling_detail

// Calls tile(integral_constant<NR>, integral_constant<NT>, m, n) for tiles of NR <= MR rows
// starting at m and NT <= NT_MAX tokens starting at n, covering rows [m0, m1) x tokens [0, N).
// row_bytes is the size of one packed weight row (it sets the row chunk kept in L2).
template <int MR, int NT_MAX, typename TileFn>
inline void tiled_gemm_2d(int64_t N, int64_t m0, int64_t m1, int64_t row_bytes, TileFn tile) {
    // 384 KiB of weights per chunk: well inside a 1-2 MiB L2 next to the activation tiles, and
    // large enough that the chunk loop's own overhead vanishes.
    const int64_t rows = std::max<int64_t>(MR, (384 * 1024 / std::max<int64_t>(row_bytes, 1)) / MR * MR);
    for (int64_t mc = m0; mc < m1; mc += rows) {
        const int64_t me = std::min(m1, mc + rows);
        for (int64_t n = 0; n < N; n += NT_MAX) {
            const int nt = (int)std::min<int64_t>(NT_MAX, N - n);
            for (int64_t m = mc; m < me; m += MR) {
                const int nr = (int)std::min<int64_t>(MR, me - m);
                tiling_detail::with_tile<MR, NT_MAX>(nr, nt, [&](auto r, auto t) { tile(r, t, m, n); });
            }
        }
    }
}

}  // namespace
}  // namespace bitnet
