// Chooses the kernel set once, at first use, from what the CPU (and the OS, which must save the
// wider registers on a context switch) supports, or from the BITNET_ISA environment variable.
//
// This file is compiled without any -m flag, so it calls no intrinsic itself; the ISA sets live
// in x86/kernels_*.cpp and arm/kernels_neon*.cpp, compiled with their own flags, and are
// referenced only when CMake defines BITNET_HAVE_X86 or BITNET_HAVE_ARM.
#include <cstdlib>
#include <string>

#if defined(BITNET_HAVE_ARM) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "kernels/kernels.h"
#include "util/common.h"

namespace bitnet {

#if defined(BITNET_HAVE_X86)
const KernelSet& kernels_avx2();        // x86/kernels_avx2.cpp
const KernelSet& kernels_avx512vnni();  // x86/kernels_avx512.cpp
#endif
#if defined(BITNET_HAVE_ARM)
const KernelSet& kernels_neon();          // arm/kernels_neon.cpp
const KernelSet& kernels_neon_dotprod();  // arm/kernels_neon_dotprod.cpp
#endif

std::vector<const KernelSet*> kernels_available() {
    std::vector<const KernelSet*> sets = {&kernels_ref()};
#if defined(BITNET_HAVE_X86)
    // __builtin_cpu_supports reads CPUID and (in libgcc and compiler-rt alike) reports AVX and
    // AVX-512 features only when XGETBV says the OS saves the YMM / ZMM and mask registers.
    __builtin_cpu_init();
    // Intel Haswell (2013) and later, AMD Zen 1 (2017) and later; F16C and FMA arrived with them.
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        sets.push_back(&kernels_avx2());
    // Intel Ice Lake / Cascade Lake servers (2019) and later (not Alder Lake client chips, which
    // fuse AVX-512 off), AMD Zen 4 (2022) and later.
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
        sets.push_back(&kernels_avx512vnni());
#endif
#if defined(BITNET_HAVE_ARM)
    // Advanced SIMD: every aarch64 CPU.
    sets.push_back(&kernels_neon());
#if defined(__linux__)
    // SDOT: Cortex-A55/A75 (2017) and later, Neoverse N1 and later; the kernel reports it in
    // HWCAP only when it also lets user space use it.
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) sets.push_back(&kernels_neon_dotprod());
#endif
#endif
    return sets;
}

// The last available set is the fastest: kernels_available lists them in order of preference.
static const KernelSet& kernels_choose() {
    const std::vector<const KernelSet*> sets = kernels_available();
    const char* want = std::getenv("BITNET_ISA");
    if (want == nullptr || *want == '\0') return *sets.back();
    std::string names;
    for (const KernelSet* s : sets) {
        if (want == std::string(s->isa)) return *s;
        names += names.empty() ? s->isa : std::string(", ") + s->isa;
    }
    fail("BITNET_ISA=%s is not a kernel set this build supports on this CPU (available: %s); "
         "unset it or pick one of those",
         want, names.c_str());
}

const KernelSet& kernels() {
    static const KernelSet& chosen = kernels_choose();
    return chosen;
}

}  // namespace bitnet
