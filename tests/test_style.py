"""Code in the book fits its column: ruff (line length 88, pyproject.toml) is clean
on the package, the tests, the benchmarks and every notebook."""

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

RUFF = Path(sys.executable).parent / "ruff"
PATHS = ["src", "tests", "benchmarks", "notebooks", "book/_ext"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RUFF), *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ruff_lint_is_clean():
    result = ruff("check", "--output-format", "concise", "--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_ruff_format_is_clean():
    result = ruff("format", "--check", "--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
