#!/usr/bin/env bash
# CI for aarch64 without an Arm machine: cross-compile the kernel test with g++-aarch64-linux-gnu
# (cmake/aarch64-linux-gnu.cmake) and run it under qemu-user, once on an emulated CPU with the
# dot-product extension (sets: scalar, neon, neon-dotprod) and once on one without (scalar, neon),
# so both NEON builds and the HWCAP dispatch are checked bit for bit against the scalar reference.
# Installs the cross compiler and qemu with apt-get when they are missing. About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    echo "+ apt-get install g++-aarch64-linux-gnu qemu-user-static"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++-aarch64-linux-gnu qemu-user-static >/dev/null
fi

BUILD=${BITNET_ARM_BUILD_DIR:-build-arm}
echo "+ cross-build test_kernels for aarch64 in $BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
    -DBITNET_BUILD_TOOLS=OFF -DBITNET_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD" --target test_kernels -j2

run() {  # $1: qemu CPU model, $2: the kernel sets test_kernels must report
    echo "+ qemu-aarch64-static -cpu $1 test_kernels"
    out=$(qemu-aarch64-static -cpu "$1" -L /usr/aarch64-linux-gnu "$BUILD/bin/test_kernels")
    echo "$out" | grep -E "^kernel sets|FAIL|passed|failure"
    echo "$out" | grep -qxF "kernel sets: $2" || { echo ".ci/arm.sh: expected kernel sets: $2" >&2; exit 1; }
    echo "$out" | grep -qxF "all kernel tests passed"
}
run max "scalar neon neon-dotprod"
run cortex-a53 "scalar neon"
