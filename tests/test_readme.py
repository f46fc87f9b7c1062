"""README.md as executable documentation, and the commands it promises.

Every example in README.md runs here, so a change that alters what it shows fails. New
blocks are picked up as they are added; the conventions a block follows:

- A ```python block runs in a fresh interpreter, in an empty temporary directory,
  against the installed cmicrograd. A block right after the line ``<!-- continues -->``
  (an HTML comment: GitHub and PyPI show nothing) runs in the same interpreter after the
  block before it, with its names (the compile example trains the model of the block
  before); every other block starts afresh.
- A ``print(...)`` line whose comment starts with a number (``# 24.7041`` or
  ``# 138.8338, dg/da``) must print exactly that number: the comment up to its first
  comma. Other comments are prose and are not checked.
- A plain ``` block whose first line is ``$ .venv/bin/cmicrograd ARGS`` is that command's
  output: ``python -m cmicrograd ARGS`` runs in a temporary directory, and the block's
  other lines must appear in its output (stderr, where the progress goes, then stdout) in
  order and consecutively, except that a line ``...`` stands for lines left out and
  times (``in 0.05 s``) may differ. A ``$`` block of any other command fails until this
  file learns to run it.
- A block that needs something optional skips without it, saying what is missing: the
  graphviz package (``cmicrograd.viz``), Graphviz's ``dot`` program (``render_dot``),
  matplotlib (``--plot``, ``cmicrograd.plot``). Add a line to OPTIONAL for a new one.

Which files these tests read, and where they are: README.md and benchmarks/README.md ship
in the sdist (MANIFEST.in: README.md is the package's long description), so these tests
run from a checkout and from the unpacked sdist (tools/check_dist.sh); they skip only
where tests/ runs alone, as cibuildwheel copies it. .ci/run is CI's script for the
repository and does not ship: the test that reads it skips without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from typing import List, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCH_README = ROOT / "benchmarks" / "README.md"
CI = ROOT / ".ci" / "run"
CONTINUES = "<!-- continues -->"
REQUIRE_EXTENSION = os.environ.get("CMICROGRAD_REQUIRE_EXTENSION", "").strip().lower() in (
    "1", "true", "yes", "on",
)

pytestmark = pytest.mark.skipif(
    not README.exists(),
    reason="README.md is not here: tests/ runs on its own (as cibuildwheel copies it); "
           "the README's examples are checked from a checkout or the unpacked sdist",
)


# ---- reading the README ----------------------------------------------------------------
@dataclass
class Block:
    lang: str          # "python", "bash", "" (a plain block)
    text: str
    line: int          # README line of the block's first line of code
    section: str       # the heading above it
    continues: bool    # preceded by CONTINUES

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.section})"


def read_blocks(path: pathlib.Path) -> List[Block]:
    """The fenced blocks of a Markdown file (fences at the start of a line)."""
    blocks: List[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    section, previous, i = "top", "", 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^#+ ", line):
            section = line.lstrip("#").strip()
        opening = re.match(r"^```(\w*)\s*$", line)
        if opening is None:
            if line.strip():
                previous = line.strip()
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"README.md:{i + 1}: a ``` block that is never closed"
        blocks.append(Block(opening.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 2,
                            section, previous == CONTINUES))
        previous, i = "```", end + 1
    return blocks


BLOCKS = read_blocks(README) if README.exists() else []


def python_programs(blocks: List[Block]) -> List[List[Block]]:
    """The python blocks, grouped into the programs they make: a block that continues
    joins the program of the python block before it."""
    programs: List[List[Block]] = []
    for block in blocks:
        if block.lang != "python":
            continue
        if block.continues:
            assert programs, f"{block.name} continues, but no python block comes before it"
            programs[-1].append(block)
        else:
            programs.append([block])
    return programs


PROGRAMS = python_programs(BLOCKS)
SAMPLES = [b for b in BLOCKS if b.lang == "" and b.text.startswith("$ ")]


# ---- what a block may need ---------------------------------------------------------------
def _have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


OPTIONAL = [
    # (text in the block, is it there?, why the block skips without it)
    (("cmicrograd.viz", "draw_dot", "render_dot"), lambda: _have_module("graphviz"),
     'the graphviz package is not installed (pip install "cmicrograd[viz]")'),
    (("render_dot",), lambda: shutil.which("dot") is not None,
     "Graphviz's dot program is not installed (apt-get install graphviz)"),
    (("--plot", "cmicrograd.plot", "matplotlib"), lambda: _have_module("matplotlib"),
     'matplotlib is not installed (pip install "cmicrograd[plot]")'),
]


def skip_without_what_it_needs(text: str, name: str) -> None:
    for words, present, why in OPTIONAL:
        if any(w in text for w in words) and not present():
            pytest.skip(f"{name}: {why}")


# ---- the python blocks -------------------------------------------------------------------
# Runs the blocks of one program in one namespace, with the README's own file name and
# line numbers (a traceback points into README.md), and records which README line printed
# what. argv: the blocks (JSON), where to write the prints (JSON).
RUNNER = r"""
import builtins, io, json, sys

blocks = json.load(open(sys.argv[1], encoding="utf-8"))
printed = []  # [README line, text]


def print(*args, **kwargs):
    if kwargs.get("file") is None:
        buf = io.StringIO()
        builtins.print(*args, **dict(kwargs, file=buf))
        caller = sys._getframe(1)
        printed.append([caller.f_lineno, buf.getvalue()])
    builtins.print(*args, **kwargs)


namespace = {"__name__": "__main__", "print": print}
try:
    for block in blocks:
        source = "\n" * (block["line"] - 1) + block["text"]
        exec(compile(source, block["path"], "exec"), namespace)
finally:
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(printed, f)
"""

NUMBER = re.compile(r"^[-+]?(\d|\.\d|inf\b|nan\b)")


def expected_prints(block: Block) -> List[tuple]:
    """[(README line, expected text)] for the print lines whose comment is a number."""
    out = []
    lines = block.text.splitlines(keepends=True)
    tokens = tokenize.generate_tokens(iter(lines).__next__)
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row = tok.start[0]
        comment = tok.string[1:].strip()
        if lines[row - 1].lstrip().startswith("print(") and NUMBER.match(comment):
            out.append((block.line + row - 1, comment.split(",")[0].strip()))
    return out


@pytest.mark.parametrize("program", PROGRAMS, ids=[p[0].name for p in PROGRAMS])
def test_python_block_runs_and_prints_what_it_says(program: List[Block], tmp_path: pathlib.Path):
    for block in program:
        skip_without_what_it_needs(block.text, block.name)
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps([{"line": b.line, "text": b.text, "path": str(README)}
                                  for b in program]), encoding="utf-8")
    prints = tmp_path / "printed.json"
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", RUNNER, str(blocks), str(prints)],
                          cwd=str(work), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"{' + '.join(b.name for b in program)} failed:\n{done.stderr[-4000:]}")
    printed = json.loads(prints.read_text(encoding="utf-8"))
    for block in program:
        for line, expected in expected_prints(block):
            got = [text.rstrip("\n") for at, text in printed if at == line]
            if not got or any(g != expected for g in got):
                pytest.fail(f"README.md:{line} says it prints {expected}; it printed "
                            + (", ".join(got) if got else "nothing"))


def test_the_readme_has_checked_examples():
    """The parser still finds the README's examples (a broken one would check nothing)."""
    assert PROGRAMS and SAMPLES
    assert any(expected_prints(b) for p in PROGRAMS for b in p)


# ---- the command-line samples ---------------------------------------------------------------
TIME = re.compile(r"\bin \d+(?:\.\d+)? s\b")


def _deterministic(line: str) -> str:
    return TIME.sub("in <time> s", line.rstrip())


def _find_in_order(expected: List[str], actual: List[str]) -> Optional[List[str]]:
    """None if the expected lines appear in `actual` in order, each run between two
    '...' lines consecutively; else the run that was not found."""
    runs: List[List[str]] = [[]]
    for line in expected:
        if line.strip() == "...":
            runs.append([])
        else:
            runs[-1].append(line)
    pos = 0
    for run in runs:
        if not run:
            continue
        at = next((i for i in range(pos, len(actual) - len(run) + 1)
                   if actual[i:i + len(run)] == run), None)
        if at is None:
            return run
        pos = at + len(run)
    return None


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_command_line_sample_shows_the_real_output(sample: Block, tmp_path: pathlib.Path):
    command, *shown = sample.text.splitlines()
    argv = shlex.split(command[2:])
    if pathlib.PurePosixPath(argv[0]).name != "cmicrograd":
        pytest.fail(f"{sample.name}: no way to run `{command[2:]}` here yet: teach "
                    "tests/test_readme.py (test_command_line_sample_shows_the_real_output)")
    skip_without_what_it_needs(sample.text, sample.name)
    if importlib.util.find_spec("cmicrograd._engine") is None and not REQUIRE_EXTENSION:
        pytest.skip(f"{sample.name} shows the compiled engine's run, which is not built")
    env = dict(os.environ)
    env.pop("CMICROGRAD_PURE_PYTHON", None)  # the sample shows the default engine
    done = subprocess.run([sys.executable, "-m", "cmicrograd", *argv[1:]], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        pytest.fail(f"{sample.name}: `{command[2:]}` failed:\n{done.stderr[-4000:]}")
    actual = [_deterministic(x) for x in (done.stderr + done.stdout).splitlines()]
    missing = _find_in_order([_deterministic(x) for x in shown], actual)
    if missing is not None:
        pytest.fail(f"{sample.name} shows\n  " + "\n  ".join(missing)
                    + "\nbut the command printed\n  " + "\n  ".join(actual))


# ---- the commands ----------------------------------------------------------------------------
def _commands() -> list[str]:
    block = next((b for b in BLOCKS if b.lang == "bash"), None)
    assert block, "README.md must start with a bash block holding the two commands"
    return [line for line in block.text.splitlines() if line.strip()]


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


@pytest.mark.skipif(not BENCH_README.exists(), reason="benchmarks/README.md is not here")
def test_both_readmes_give_the_same_benchmark_command():
    """The one command that runs the benchmark from a fresh clone, in both READMEs."""
    def command(path: pathlib.Path) -> str:
        found = [line for b in read_blocks(path) if b.lang == "bash"
                 for line in b.text.splitlines() if "benchmarks/run.py" in line]
        assert found, f"{path.name} gives no command that runs benchmarks/run.py"
        return found[0]
    readme, bench = command(README), command(BENCH_README)
    assert readme == bench
    assert "python3 -m venv .venv" in readme and 'pip install ".[bench]"' in readme
