"""Runs the C++ kernel tests (tests/cpp/test_kernels.cpp) from pytest.

The binary compares every kernel set this CPU supports against the scalar reference and checks
the reference against independent packers and formulas; here we only check its exit status and
report, plus the BITNET_ISA override of the dispatcher. The binary comes from the engine_bin
fixture (conftest.py: $BITNET_BUILD_DIR/bin, default build/bin, built on demand).
"""

import os
import subprocess

import pytest


@pytest.fixture
def kernels_bin(engine_bin):
    path = engine_bin / "test_kernels"
    assert path.is_file(), f"{path} was not built: configure with -DBITNET_BUILD_TESTS=ON"
    return path


def run(binary, *args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=600)


def test_kernels_match_reference(kernels_bin):
    r = run(kernels_bin)
    assert r.returncode == 0, f"test_kernels failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "all kernel tests passed" in r.stdout
    assert "kernel sets: scalar" in r.stdout


def test_isa_override_picks_scalar(kernels_bin):
    r = run(kernels_bin, "--print-isa", env_extra={"BITNET_ISA": "scalar"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "scalar"


def test_isa_override_rejects_unknown(kernels_bin):
    r = run(kernels_bin, "--print-isa", env_extra={"BITNET_ISA": "sse9"})
    assert r.returncode == 1
    assert "BITNET_ISA=sse9" in r.stderr and "available: scalar" in r.stderr
