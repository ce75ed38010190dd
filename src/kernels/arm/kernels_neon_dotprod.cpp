// The "neon-dotprod" kernel set: kernels_neon.cpp compiled again, by CMake, with
// -march=armv8.2-a+dotprod, which makes it use SDOT and name itself accordingly.
#include "kernels/arm/kernels_neon.cpp"
