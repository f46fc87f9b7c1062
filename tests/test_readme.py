"""The README's promises that can be checked without running them."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"

pytestmark = pytest.mark.skipif(not README.exists(), reason="not run from a source checkout")


def _commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md must start with a bash block holding the two commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    assert text.index("```bash") < 40, "the two commands come first"
    install, test = _commands()
    assert "pip install" in install and "cmicrograd train" in install
    assert "pip install" in test and "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    _, test = _commands()
    assert test in CI.read_text().splitlines(), ".ci/run must run the README's test command"
