// TL1 and TL2: ternary matrices stored as indexes into per-token lookup tables (the T-MAC idea
// that bitnet.cpp's TL kernels use), their byte layout, and their matmul kernels behind one
// dispatch table of their own (TLKernelSet), chosen with the same ISA as kernels().
//
// The kernels compute exact integer products Σ_k t(W[m,k]) * Q[n,k] (t in {-1, 0, +1}, Q the
// per-token int8 activations of quantize_act): the same integers as the I2_S path after its
// "- Σq", so a TL file and an I2_S file of one checkpoint give bit-identical outputs.
//
// Kernels: scalar reference (tl_ref.cpp), AVX2 and AVX-512 (x86/), NEON (arm/tl_neon.cpp, one
// build serving both NEON ISA names), all sharing the loop nest of tl_loops.inc. For prompt
// batches (N >= 4) the AVX-512 kernels decode each 64-row block once into the unsigned codes
// t + 1 and multiply with VPDPBUSD instead of looking up tables for every token.
//
// Lookup tables. For every group of activations (a pair for TL1, a triple for TL2) a token gets a
// 16-entry table of int16 sums: TL1 entry i (i < 9) = d0*a0 + d1*a1 with i = 3(d0+1) + (d1+1);
// TL2 entry i (i < 14) = d0*a0 + d1*a1 + d2*a2 with i = 9d0 + 3d1 + d2 (balanced ternary, every
// i in 0..13 has exactly one such digit triple); unused entries are 0. |entry| <= 256 (TL1) and
// 384 (TL2) do not fit int8, so the tables are int16; the SIMD kernels look up their low and high
// bytes with two byte shuffles and sum them in int16 for at most TL1_MAX_BK / TL2_MAX_BK groups
// (so no overflow is possible) before widening to int32.
//
// Layout (both types). Rows are grouped in blocks of TL_BM = 64 (M must be a multiple of 64);
// row blocks follow each other, each holding all of K for its 64 rows, then a 32-byte trailer
// ends the tensor exactly as I2_S's does: float32 scale, float32 exact divisor (0 if unknown),
// zeros. Within a row block:
//   TL1 (K even): for each pair g = 0..K/2-1, 32 bytes; byte j holds the index of row j in its
//     low nibble and of row j+32 in its high nibble, index = 3(W[m,2g]+1) + (W[m,2g+1]+1).
//     Tensor bytes: M*K/4 + 32 (bitnet.cpp's TL1 size).
//   TL2 (any K >= 2): K = K3 + K2 with K3 = tl2_k3(K) a multiple of 3 and K2 in {0, 2, 4} even.
//     Triple t covers columns 3t..3t+2; v = 9W[m,3t] + 3W[m,3t+1] + W[m,3t+2] is stored as 32
//     bytes of magnitudes |v| (rows j / j+32 as in TL1) and four uint16 sign words (bit set:
//     v < 0); bit l of word s is row tl2_sign_row(s, l), the order in which the 256-bit
//     byte-unpack of the AVX2 kernel produces rows, so a sign word masks one int16 vector
//     directly. Triples go in units of two (80 bytes): the magnitudes of triple 2u, those of 2u+1,
//     then 16 bytes of sign words interleaved, word s of 2u then word s of 2u+1 (so that one
//     little-endian uint32 load gives the 32-lane mask of a 512-bit step over both). An odd last
//     triple is a unit of its own: 32 bytes of magnitudes, its four words (40 bytes). Offsets
//     within a row block: tl2_mag_offset, tl2_sign_offset. Then the K2/2 remainder pairs, 32
//     bytes each, coded as TL1.
//     Tensor bytes: M*(K3/3)*5/8 + M*K2/4 + 32 (1.67 bits per weight).
// The layout depends on the row block width only; the kernels' other tiles (rows per thread
// tile, groups per int16 block) are free. A TL file records its row block as `bitnet.tl.bm` and
// the version of this layout as `bitnet.tl.layout` (TL_LAYOUT), and is refused if either differs;
// bitnet.cpp's TL files, whose bytes depend on the kernel_config.ini of the machine that wrote
// them (not recorded in the file), are not readable and are refused for lacking that key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bitnet {

constexpr int64_t TL_BM = 64;                // rows per block: the layout's only tile
constexpr int64_t TL_LAYOUT = 1;             // version of the byte layout below, recorded in TL files
constexpr int64_t TL_TRAILER = 32;           // scale, divisor, zeros
constexpr int64_t TL_GROUPS_PER_BLOCK = 64;  // the generic kernels' int16 accumulation block
// Most groups one int16 sum may take without overflow: |entry| <= 256 (TL1), 384 (TL2).
constexpr int64_t TL1_MAX_BK = 32767 / 256;  // 127 pairs
// TL2's is even: the kernels' int16 blocks of triples must start at a unit of two (84 triples).
constexpr int64_t TL2_MAX_BK = 32767 / 384 / 2 * 2;
constexpr int64_t TL_LUT_BYTES = 32;         // one group's table: 16 low bytes, 16 high bytes

// Columns of a TL2 row stored as triples: the largest multiple of 3 that leaves an even
// remainder (0, 2 or 4 columns). Requires K >= 2.
inline int64_t tl2_k3(int64_t K) {
    const int64_t k3 = K / 3 * 3;
    return (K - k3) % 2 == 0 ? k3 : k3 - 3;
}

// Row of a 64-row block that bit l of TL2 sign word w (w < 4, l < 16) stands for.
inline int64_t tl2_sign_row(int64_t w, int64_t l) {
    return 32 * (w / 2) + 8 * (w % 2) + (l < 8 ? l : 8 + l);
}

// Byte offset, within a row block of a TL2 matrix with n3 triples, of triple t's magnitudes and
// of its sign word s.
inline int64_t tl2_mag_offset(int64_t t) { return 80 * (t / 2) + 32 * (t % 2); }
inline int64_t tl2_sign_offset(int64_t t, int64_t s, int64_t n3) {
    return t / 2 < n3 / 2 ? 80 * (t / 2) + 64 + 4 * s + 2 * (t % 2) : 80 * (t / 2) + 32 + 2 * s;
}

// Bytes of one 64-row block of a TL1 / TL2 matrix with rows of K values.
inline int64_t tl1_block_bytes(int64_t K) { return K / 2 * 32; }
inline int64_t tl2_block_bytes(int64_t K) {
    const int64_t k3 = tl2_k3(K);
    return k3 / 3 * 40 + (K - k3) / 2 * 32;
}

// Raw ternary products for rows [m0, m1) (multiples of TL_BM) of a packed M x K TL matrix W
// against N int8 activation rows Q (row n at Q + n*ldq, K values):
//   out[n*ldo + m] = Σ_k t(W[m,k]) * Q[n*ldq + k]
using tl_gemm_fn = void (*)(const uint8_t* W, int64_t K, const int8_t* Q, int64_t ldq, int64_t N,
                            int32_t* out, int64_t ldo, int64_t m0, int64_t m1);

// A kernel compiled for one matrix shape with compile-time tiles (rows per tile BM, groups per
// int16 block BK), from the generated include/bitnet-lut-kernels.h (utils/codegen_tl1.py,
// codegen_tl2.py). The tiles change the loop order only, never the results or the layout.
struct TLShapeKernel {
    uint32_t type;  // TYPE_TL1 or TYPE_TL2
    int64_t M, K;
    tl_gemm_fn gemm;
};

struct TLKernelSet {
    const char* isa;  // the same names as KernelSet::isa
    tl_gemm_fn tl1_gemm, tl2_gemm;  // generic: any shape the layout allows
    const TLShapeKernel* shapes;    // specializations of this ISA (n_shapes of them)
    size_t n_shapes;
};

// The kernel of set ts for a `type` matrix of M x K: its specialization for that shape if the
// generated header has one, else the generic kernel (slower, never different).
tl_gemm_fn tl_gemm_for(const TLKernelSet& ts, uint32_t type, int64_t M, int64_t K);

// Scalar reference set: the oracle of the tests, and the fallback.
const TLKernelSet& tl_kernels_ref();
// Every set compiled in and supported by this CPU (those of kernels_available()), reference first.
std::vector<const TLKernelSet*> tl_kernels_available();
// The set of the same ISA as kernels() (so BITNET_ISA picks it too), or the reference.
const TLKernelSet& tl_kernels();

// The per-token tables of N activation rows, TL_LUT_BYTES per group (low bytes of the 16 int16
// entries, then their high bytes), groups in the order of the layout:
//   TL1: K/2 pair tables per token;  TL2: K3/3 triple tables then (K-K3)/2 pair tables.
// lut holds N * groups * 32 bytes; token n's tables start at lut + n * groups * 32.
int64_t tl1_groups(int64_t K);
int64_t tl2_groups(int64_t K);
// The digit (-1, 0, 1) by which table entry i weights a group's activation j: d[j][i] (0 for the
// unused entries), so entry i = Σ_j d[j][i] * a_j. The SIMD kernels build their tables from these.
struct TLDigits {
    int16_t d[3][16];
};
const TLDigits& tl_pair_digits();    // j < 2
const TLDigits& tl_triple_digits();  // j < 3

void tl1_build_luts(const int8_t* Q, int64_t ldq, int64_t N, int64_t K, int8_t* lut);
void tl2_build_luts(const int8_t* Q, int64_t ldq, int64_t N, int64_t K, int8_t* lut);

}  // namespace bitnet
