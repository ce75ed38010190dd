// Choosing among the kernel sets of one family (QuantKernelSet, TLKernelSet, ...): each family
// offers exactly the ISAs kernels_available() offers and follows the ISA kernels() chose
// (dispatch.cpp), so BITNET_ISA picks every family at once.
//
// For the files compiled without ISA flags only (the *_ref.cpp that own each family's choice).
#pragma once

#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace bitnet {

// The sets of `compiled` (each with a `const char* isa` member naming a KernelSet::isa) whose ISA
// kernels_available() offers, in its order: it has checked the CPU and the OS.
template <typename Set>
std::vector<const Set*> isa_sets_available(const std::vector<const Set*>& compiled) {
    std::vector<const Set*> sets;
    for (const KernelSet* ks : kernels_available())
        for (const Set* s : compiled)
            if (std::string(s->isa) == ks->isa) sets.push_back(s);
    return sets;
}

// The set of `available` for the ISA of kernels(), or else for the best ISA below it in
// kernels_available()'s order: a family with no set of its own for an extension (TL kernels have
// no use for NEON's SDOT) runs its set for the base ISA, not the scalar one. `fallback` (the
// family's scalar set) if there is none.
template <typename Set>
const Set& isa_set_chosen(const std::vector<const Set*>& available, const Set& fallback) {
    const std::string chosen = kernels().isa;
    const Set* best = &fallback;
    for (const KernelSet* ks : kernels_available()) {
        for (const Set* s : available)
            if (ks->isa == std::string(s->isa)) best = s;
        if (chosen == ks->isa) break;
    }
    return *best;
}

}  // namespace bitnet
