"""The README's promises that can be checked without running them.

README.md ships in the sdist (it is the package's long description), so these run from a
checkout and from the unpacked sdist; they skip where tests/ runs alone (cibuildwheel
copies only tests/). .ci/run is CI's script for the repository and does not ship: the
test that reads it skips without it.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"

pytestmark = pytest.mark.skipif(
    not README.exists(),
    reason="README.md is not here: tests/ runs on its own (as cibuildwheel copies it); "
           "the README is checked from a checkout or the unpacked sdist",
)


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


@pytest.mark.skipif(not CI.exists(), reason=".ci/run is not here: it is CI's script for the "
                    "repository and is not in the sdist, so this runs from a checkout only")
def test_ci_runs_exactly_the_readme_test_command():
    _, test = _commands()
    assert test in CI.read_text().splitlines(), ".ci/run must run the README's test command"
