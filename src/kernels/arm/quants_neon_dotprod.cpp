// The "neon-dotprod" set of the llama.cpp block types: quants_neon.cpp compiled again, by CMake,
// with -march=armv8.2-a+dotprod, which makes it use SDOT and name itself accordingly.
#include "kernels/arm/quants_neon.cpp"
