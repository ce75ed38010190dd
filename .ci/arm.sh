#!/usr/bin/env bash
# CI for aarch64 without an Arm machine: cross-compile the kernel tests with g++-aarch64-linux-gnu
# (cmake/aarch64-linux-gnu.cmake) and run them under qemu-user, once on an emulated CPU with the
# dot-product extension (sets: scalar, neon, neon-dotprod) and once on one without (scalar, neon),
# so both NEON builds and the HWCAP dispatch are checked against the scalar reference:
# test_kernels (I2_S, activations), test_attn (tiled attention, within its derived bound and row
# independent) and test_tl (TL1/TL2 lookup tables: one NEON set, which
# tl_kernels() must also take when the SDOT set is the best) bit for bit, test_quants (the llama.cpp block types) bit for bit for the
# ternary ones and within its derived float tolerance for Q8_0/Q4_0/Q6_K, as on x86. Installs the
# cross compiler and qemu with apt-get when they are missing. About two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    echo "+ apt-get install g++-aarch64-linux-gnu qemu-user-static"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++-aarch64-linux-gnu qemu-user-static >/dev/null
fi

BUILD=${BITNET_ARM_BUILD_DIR:-build-arm}
echo "+ cross-build test_kernels, test_tl, test_quants and test_attn for aarch64 in $BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
    -DBITNET_BUILD_TOOLS=OFF -DBITNET_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD" --target test_kernels test_tl test_quants test_attn -j2

# $1: qemu CPU model, $2: test binary, $3: the line naming the sets it must report, $4: a grep
# pattern for its success line, $5 (optional): one more line it must print
check() {
    echo "+ qemu-aarch64-static -cpu $1 $2"
    out=$(qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$BUILD/bin/$2") || {
        echo "$out" | tail -n 60; echo ".ci/arm.sh: $2 failed on -cpu $1" >&2; exit 1; }
    echo "$out" | grep -E "kernel sets|kernels used|FAIL|passed|failure|cases"
    echo "$out" | grep -qxF "$3" || { echo ".ci/arm.sh: $2 on -cpu $1: expected '$3'" >&2; exit 1; }
    echo "$out" | grep -qx "$4" || { echo ".ci/arm.sh: $2 on -cpu $1: no line '$4'" >&2; exit 1; }
    [ -z "${5:-}" ] || echo "$out" | grep -qxF "$5" || { echo ".ci/arm.sh: $2 on -cpu $1: expected '$5'" >&2; exit 1; }
}
# $1: qemu CPU model, $2: the kernel sets (and quant kernel sets) it must offer, $3: the TL sets,
# $4: the TL set tl_kernels() must take for the best kernel set
run() {
    check "$1" test_kernels "kernel sets: $2" "all kernel tests passed"
    check "$1" test_tl "TL kernel sets: $3" "[0-9]* TL cases on [0-9]* kernel sets: ok" "$4"
    check "$1" test_quants "quant kernel sets: $2" "all quant kernel tests passed"
    check "$1" test_attn "attention kernel sets: scalar neon (chosen: neon)" "all attention kernel tests passed"
}
run max "scalar neon neon-dotprod" "scalar neon" "TL kernels used with the neon-dotprod kernel set: neon"
run cortex-a53 "scalar neon" "scalar neon" "TL kernels used with the neon kernel set: neon"
