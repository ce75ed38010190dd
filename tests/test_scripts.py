"""Every script a user can run (the top level and utils/) behaves like the others: `-h` prints its
help, a failure is one `error:` line with exit code 1, and what README says of a flag's default is
what --help and the tool say.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("*.py"), *ROOT.glob("utils/*.py")]
                 if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_the_scripts_are_found():
    assert {"setup_env.py", "run_inference.py", "utils/tune_kernels.py", "utils/convert_hf_to_gguf.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_dash_h_prints_the_help(script):
    res = run(script, "-h")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: "), res.stdout


@pytest.mark.parametrize("args, message", [
    (["utils/convert_hf_to_gguf.py", "/nonexistent/checkpoint"], "/nonexistent/checkpoint is not a directory"),
    (["utils/generate_dummy_model.py", "--outdir", "/proc/nope"], "/proc/nope"),
])
def test_a_failure_is_one_error_line(args, message):
    res = run(*args)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr


def test_readme_and_help_agree_on_the_embedding_default():
    from bitnet.convert.hf import default_embd_type

    for q in ("i2_s", "tl1", "tl2"):
        assert default_embd_type(q, 512) == "q6_k" and default_embd_type(q, 384) == "q8_0"
    assert default_embd_type("f16", 512) == "f16"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `--quant-embd"))
    assert re.search(r"`q6_k`.*`i2_s`, `tl1` or `tl2`", row), row
    for script in ("setup_env.py", "utils/convert_hf_to_gguf.py"):
        text = " ".join(run(script, "-h").stdout.split())
        assert re.search(r"q6_k with i2_s, tl1 or tl2|q6_k for i2_s, tl1 and tl2", text), (script, text)
