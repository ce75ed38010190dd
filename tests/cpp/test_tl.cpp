// Tests of the TL1/TL2 lookup-table kernels (kernels/tl.h): every compiled TLKernelSet this CPU
// supports, the scalar reference included, against an independent computation: the ternary
// matrix packed here from the layout description of kernels/tl.h, and Σ t·q computed directly in
// int64 from the unpacked ternary values. Shapes include K of every residue mod 3 and 2 (the TL2
// triple/pair split), short and long K (several int16 blocks), sub-ranges of rows, several
// tokens, and the extreme values (all weights ±1, activations -128) that bound the int16 sums.
//
//   test_tl           run all tests; exit status 1 and a line naming ISA, kernel and shape for
//                     every failure
//   test_tl --bench   GEMV (N=1) and prompt (N=128) speed of TL1/TL2 against I2_S on the linear
//                     shapes of BitNet b1.58 2B4T, one thread, GB/s of weight bytes read
//   test_tl --tune N  time the kernels the generated header specializes on N tokens (one line
//                     "type M K N seconds" per shape), for utils/tune_kernels.py
//   test_tl --gemm TYPE M K N W X OUT
//                     driver for tests/test_tl.py: W is utils/tl_pack.py's payload of TYPE (TL1 or
//                     TL2) for an M x K matrix, X int8 [N, K], OUT int32 [N, M] from the kernels
//                     of the ISA BITNET_ISA picks.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/tl.h"
#include "util/common.h"

using namespace bitnet;

namespace {

int g_failures = 0;
std::mt19937_64 g_rng(20261123);

int64_t rand_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng); }

// The byte holding row r (of a 64-row block) of one group: rows j and j+32 share byte j.
void put_index(uint8_t* group, int64_t r, int idx) {
    group[r % 32] |= (uint8_t)(idx << (r < 32 ? 0 : 4));
}

// Packs ternary t [M, K] (M a multiple of 64) as TYPE, following the layout text of kernels/tl.h.
std::vector<uint8_t> pack(uint32_t type, const std::vector<int8_t>& t, int64_t M, int64_t K) {
    const bool tl2 = type == TYPE_TL2;
    const int64_t k3 = tl2 ? tl2_k3(K) : 0, block = tl2 ? tl2_block_bytes(K) : tl1_block_bytes(K);
    std::vector<uint8_t> w((size_t)(M / TL_BM * block + TL_TRAILER), 0);
    for (int64_t b = 0; b < M / TL_BM; ++b) {
        uint8_t* p = w.data() + b * block;
        for (int64_t k = 0; k < k3; k += 3)
            for (int64_t r = 0; r < TL_BM; ++r) {
                const int8_t* row = &t[(size_t)((b * TL_BM + r) * K + k)];
                const int v = 9 * row[0] + 3 * row[1] + row[2];
                put_index(p + tl2_mag_offset(k / 3), r, v < 0 ? -v : v);
                if (v < 0)
                    for (int s = 0; s < 4; ++s)
                        for (int l = 0; l < 16; ++l)
                            if (tl2_sign_row(s, l) == r)
                                p[tl2_sign_offset(k / 3, s, k3 / 3) + l / 8] |= (uint8_t)(1 << (l % 8));
            }
        p += k3 / 3 * 40;
        for (int64_t k = k3; k < K; k += 2, p += 32)
            for (int64_t r = 0; r < TL_BM; ++r) {
                const int8_t* row = &t[(size_t)((b * TL_BM + r) * K + k)];
                put_index(p, r, 3 * (row[0] + 1) + (row[1] + 1));
            }
    }
    return w;
}

const char* type_str(uint32_t type) { return type == TYPE_TL1 ? "tl1" : "tl2"; }

// Checks the kernels of every set on one shape: the generic kernels, or with `only` the kernel
// `only` of set `only_set` (a generated per-shape specialization).
void check(uint32_t type, int64_t M, int64_t K, int64_t N, bool extreme, const TLKernelSet* only_set = nullptr,
           tl_gemm_fn only = nullptr) {
    std::vector<int8_t> t((size_t)(M * K)), q((size_t)(N * (K + 5)));
    const int64_t ldq = K + 5;  // not a multiple of anything: the kernels must honour ldq
    for (int8_t& v : t) v = extreme ? (int8_t)(rand_int(0, 1) ? 1 : -1) : (int8_t)rand_int(-1, 1);
    for (int8_t& v : q) v = extreme ? (int8_t)-128 : (int8_t)rand_int(-128, 127);
    if (extreme)  // all weights of row 0 equal: |Σ| reaches 128 K
        for (int64_t k = 0; k < K; ++k) t[(size_t)k] = 1;
    const std::vector<uint8_t> w = pack(type, t, M, K);
    std::vector<int32_t> want((size_t)(N * M));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t m = 0; m < M; ++m) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; ++k) s += (int64_t)t[(size_t)(m * K + k)] * q[(size_t)(n * ldq + k)];
            want[(size_t)(n * M + m)] = (int32_t)s;
        }
    // rows [m0, m1): the first block is skipped when there are several, to catch writes outside
    const int64_t m0 = M > TL_BM ? TL_BM : 0, m1 = M;
    std::vector<const TLKernelSet*> sets = tl_kernels_available();
    if (only_set) sets = {only_set};
    for (const TLKernelSet* ts : sets) {
        std::vector<int32_t> out((size_t)(N * M), INT32_MIN);
        const tl_gemm_fn f = only ? only : type == TYPE_TL1 ? ts->tl1_gemm : ts->tl2_gemm;
        f(w.data(), K, q.data(), ldq, N, out.data(), M, m0, m1);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t m = 0; m < M; ++m) {
                const int32_t got = out[(size_t)(n * M + m)];
                const int32_t exp = m >= m0 ? want[(size_t)(n * M + m)] : INT32_MIN;
                if (got != exp) {
                    ++g_failures;
                    if (g_failures <= 50)
                        std::printf("FAIL [%s] %s M=%" PRId64 " K=%" PRId64 " N=%" PRId64 "%s: out[%" PRId64
                                    "][%" PRId64 "] = %d, expected %d\n",
                                    ts->isa, type_str(type), M, K, N, extreme ? " extreme" : "", n, m, got, exp);
                    n = N;
                    break;
                }
            }
    }
}

int run_tests() {
    std::printf("TL kernel sets:");
    for (const TLKernelSet* ts : tl_kernels_available()) std::printf(" %s", ts->isa);
    std::printf("\nTL kernels used with the %s kernel set: %s\n", kernels().isa, tl_kernels().isa);
    int cases = 0;
    for (uint32_t type : {TYPE_TL1, TYPE_TL2}) {
        for (int64_t K : {2, 4, 5, 6, 7, 8, 130, 192, 193, 194, 256, 390, 777, 2560}) {
            if (type == TYPE_TL1 && K % 2) continue;
            for (int64_t M : {64, 192})
                for (int64_t N : {1, 3, 4, 13}) {  // 4 and 13: the AVX-512 batch path, whole and partial tiles
                    check(type, M, K, N, false);
                    ++cases;
                }
            check(type, 128, K, 2, true);
            check(type, 64, K, 7, true);
            cases += 2;
        }
        check(type, 64, 2560, 40, false);  // 40 tokens: more than one chunk of tables (tl_loops.inc)
        ++cases;
    }
    // the shapes include/bitnet-lut-kernels.h specializes, if the build has one
    for (const TLKernelSet* ts : tl_kernels_available())
        for (size_t i = 0; i < ts->n_shapes; ++i) {
            const TLShapeKernel& sk = ts->shapes[i];
            check(sk.type, sk.M, sk.K, 2, false, ts, sk.gemm);
            check(sk.type, sk.M, sk.K, 1, true, ts, sk.gemm);
            check(sk.type, sk.M, sk.K, 8, false, ts, sk.gemm);
            cases += 3;
        }
    std::printf("%d TL cases on %zu kernel sets: %s\n", cases, tl_kernels_available().size(),
                g_failures ? "FAILED" : "ok");
    return g_failures ? 1 : 0;
}

// ---- benchmark --------------------------------------------------------------------------------

template <typename F>
double time_best(F&& f) {
    double best = 1e30;
    const auto start = std::chrono::steady_clock::now();
    do {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 0.5);
    return best;
}

int run_bench() {
    const int64_t shapes[][2] = {{2560, 2560}, {640, 2560}, {6912, 2560}, {2560, 6912}};
    std::printf("2B4T linear shapes, 1 thread, best time; GB/s = weight bytes / time\n");
    std::printf("%-11s %-5s %5s %5s %4s %8s %10s %8s\n", "isa", "type", "M", "K", "N", "MB", "time ms", "GB/s");
    for (const auto& s : shapes) {
        const int64_t M = s[0], K = s[1];
        std::vector<int8_t> t((size_t)(M * K));
        for (int8_t& v : t) v = (int8_t)rand_int(-1, 1);
        for (int64_t N : {1, 128}) {
            std::vector<int8_t> q((size_t)(N * K));
            for (int8_t& v : q) v = (int8_t)rand_int(-128, 127);
            std::vector<int32_t> out((size_t)(N * M));
            for (uint32_t type : {TYPE_TL1, TYPE_TL2}) {
                const std::vector<uint8_t> w = pack(type, t, M, K);
                for (const TLKernelSet* ts : tl_kernels_available()) {
                    if (N > 1 && std::string(ts->isa) == "scalar") continue;
                    const tl_gemm_fn f = tl_gemm_for(*ts, type, M, K);
                    const double sec = time_best([&] { f(w.data(), K, q.data(), K, N, out.data(), M, 0, M); });
                    std::printf("%-11s %-5s %5" PRId64 " %5" PRId64 " %4" PRId64 " %8.2f %10.3f %8.2f\n", ts->isa,
                                type_str(type), M, K, N, w.size() / 1e6, sec * 1e3, w.size() / sec / 1e9);
                }
            }
            // I2_S of the same matrix size, for comparison (the byte layout does not matter here)
            std::vector<uint8_t> i2s((size_t)(M * K / 4), 0x55);
            const KernelSet& ks = kernels();
            const double sec = time_best([&] { ks.i2s_gemm(i2s.data(), K, q.data(), K, N, out.data(), M, 0, M); });
            std::printf("%-11s %-5s %5" PRId64 " %5" PRId64 " %4" PRId64 " %8.2f %10.3f %8.2f\n", ks.isa, "i2_s", M,
                        K, N, i2s.size() / 1e6, sec * 1e3, i2s.size() / sec / 1e9);
        }
    }
    return 0;
}

// One line "TYPE M K N seconds" per shape the build's header specializes, timing the kernels of
// the ISA BITNET_ISA picks on N tokens: the measurement utils/tune_kernels.py compares tiles by.
// The engine streams each matrix from memory once per token, so the timing cycles through copies
// of the matrix that together exceed any cache (timed in the cache, the tiles that won lost by a
// third in the engine).
int run_tune(int64_t N) {
    constexpr size_t kStreamBytes = size_t(256) << 20;
    const TLKernelSet& ts = tl_kernels();
    for (size_t i = 0; i < ts.n_shapes; ++i) {
        const TLShapeKernel& sk = ts.shapes[i];
        std::vector<int8_t> t((size_t)(sk.M * sk.K)), q((size_t)(N * sk.K));
        for (int8_t& v : t) v = (int8_t)rand_int(-1, 1);
        for (int8_t& v : q) v = (int8_t)rand_int(-128, 127);
        const std::vector<uint8_t> w = pack(sk.type, t, sk.M, sk.K);
        const size_t copies = std::max<size_t>(1, kStreamBytes / w.size());
        std::vector<uint8_t> ws(copies * w.size());
        for (size_t c = 0; c < copies; ++c) std::memcpy(ws.data() + c * w.size(), w.data(), w.size());
        std::vector<int32_t> out((size_t)(N * sk.M));
        const double sec = time_best([&] {
            for (size_t c = 0; c < copies; ++c)
                sk.gemm(ws.data() + c * w.size(), sk.K, q.data(), sk.K, N, out.data(), sk.M, 0, sk.M);
        }) / (double)copies;
        std::printf("%s %" PRId64 " %" PRId64 " %" PRId64 " %.9f\n", type_str(sk.type), sk.M, sk.K, N, sec);
    }
    return 0;
}

std::vector<uint8_t> read_file(const char* path, size_t want) {
    FILE* f = std::fopen(path, "rb");
    if (!f) fail("cannot open %s", path);
    std::vector<uint8_t> buf(want + 1);
    const size_t got = std::fread(buf.data(), 1, buf.size(), f);
    std::fclose(f);
    if (got != want) fail("%s has %zu bytes, expected %zu", path, got, want);
    buf.resize(want);
    return buf;
}

int run_gemm(char** a) {
    const std::string ty = a[0];
    if (ty != "TL1" && ty != "TL2") fail("unknown type %s: use TL1 or TL2", ty.c_str());
    const uint32_t type = ty == "TL1" ? TYPE_TL1 : TYPE_TL2;
    const int64_t M = std::stoll(a[1]), K = std::stoll(a[2]), N = std::stoll(a[3]);
    const std::vector<uint8_t> w = read_file(a[4], type_nbytes(type, K, M * K, "W"));
    const std::vector<uint8_t> x = read_file(a[5], (size_t)(N * K));
    std::vector<int32_t> out((size_t)(N * M));
    tl_gemm_for(tl_kernels(), type, M, K)(w.data(), K, (const int8_t*)x.data(), K, N, out.data(), M, 0, M);
    FILE* f = std::fopen(a[6], "wb");
    if (!f || std::fwrite(out.data(), sizeof(int32_t), out.size(), f) != out.size()) fail("cannot write %s", a[6]);
    std::fclose(f);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode.empty()) return run_tests();
        if (mode == "--bench") return run_bench();
        if (mode == "--tune" && argc == 3) return run_tune(std::stoll(argv[2]));
        if (mode == "--gemm" && argc == 9) return run_gemm(argv + 2);
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "error: unknown arguments starting with '%s'; use no argument, --bench, --tune N "
                 "or --gemm TYPE M K N W X OUT\n", mode.c_str());
    return 2;
}
