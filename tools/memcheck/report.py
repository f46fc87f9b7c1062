"""What the memory checkers found that is the engine's doing.

    python tools/memcheck/report.py valgrind XML NAME
        one scenario's valgrind log (--xml=yes), run by tools/valgrind.sh
    python tools/memcheck/report.py sanitizers LOGDIR LABEL
        every ASan/LSan/UBSan log in LOGDIR, run by tools/sanitize.sh

Prints each record that is ours, then one line of counts; exit status 1 if any record
is ours, else 0. CPython and numpy have their own errors and leaks under both tools
(see the scripts' --help), so a record counts only when a frame of its stack is in
the engine: the same names for both tools, in ENGINE_MARKS.
"""

import glob
import os
import re
import sys
import xml.etree.ElementTree as ET


# The engine's C headers: every *.h in src/ (node.h, kernels.h, value_alloc.h, ... and any
# added later), and the force-included tools/memcheck/asan_value_alloc.h. Their static
# inline functions are inlined into the engine's frames, so a stack may name only the
# header (e.g. src/node.h:33) and no _engine.c line.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
HEADERS = sorted({"node.h", "kernels.h", "value_alloc.h", "asan_value_alloc.h"}
                 | {os.path.basename(h) for h in glob.glob(os.path.join(_SRC, "*.h"))})


def engine_marks(start, end):
    """The engine's names in a stack frame: its shared object, its sources (_engine.c,
    the headers in HEADERS, *.pyx, *.pxi) and Cython's C names for its functions. A
    source name is followed by `end`, and _engine.c, the headers and the function names
    are preceded by `start`: valgrind's XML gives each of a frame's fields on its own
    ("^", "$"), a sanitizer's text has "dir/file:line" (no name character before, ":")."""
    headers = "|".join(re.escape(h) for h in HEADERS)
    return re.compile(rf"cmicrograd/_engine[.\w-]*\.so|{start}_engine\.c{end}"
                      rf"|{start}(?:{headers}){end}"
                      rf"|\.pyx{end}|\.pxi{end}|{start}__pyx_\w*10cmicrograd")


ENGINE_MARKS = {"valgrind": engine_marks("^", "$"),
                "sanitizers": engine_marks(r"(?<![\w.-])", ":")}


# ---- valgrind ---------------------------------------------------------------------------
# Definitely and indirectly lost count; "possibly lost" is an interior pointer (a
# PyObject* is 16 bytes into its GC block), CPython's own way of pointing at objects.
COUNTED = {"Leak_DefinitelyLost", "Leak_IndirectlyLost"}


def frames(stack):
    for f in stack.iter("frame"):
        yield {k: (f.findtext(k) or "") for k in ("fn", "file", "line", "obj")}


def valgrind(path, name):
    """Print one scenario's records through the engine; 1 if there are any."""
    ours_re = ENGINE_MARKS["valgrind"]
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        print(f"  {name}: could not read valgrind's XML ({exc}); see the log")
        return 1

    def ours(err):
        return any(ours_re.search(fr["obj"]) or ours_re.search(fr["file"])
                   or ours_re.search(fr["fn"])
                   for st in err.iter("stack") for fr in frames(st))

    bad = other = possible = 0
    for err in root.iter("error"):
        kind = err.findtext("kind") or "?"
        leak = kind.startswith("Leak_")
        if not ours(err):
            other += 1
            continue
        if leak and kind not in COUNTED:
            possible += 1
            continue
        bad += 1
        what = err.findtext("what") or err.findtext("xwhat/text") or ""
        print(f"  ---- {name}: {kind}: {what}")
        notes = ([a.text for a in err.iter("auxwhat")]
                 + [a.findtext("text") for a in err.iter("xauxwhat")])
        for i, st in enumerate(err.iter("stack")):
            if i and i - 1 < len(notes) and notes[i - 1]:
                print(f"    {notes[i - 1]}")
            for fr in list(frames(st))[:20]:
                loc = f"{fr['file']}:{fr['line']}" if fr["file"] else fr["obj"]
                print(f"      {fr['fn'] or '???'} ({loc})")
                if fr["fn"] == "_PyEval_EvalFrameDefault":
                    break  # the rest is the interpreter
    print(f"  {name}: {bad} error/leak records in the engine, {possible} 'possibly lost' "
          f"through the engine (ignored), {other} records outside it (ignored)")
    return 1 if bad else 0


# ---- AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer --------------------------
BLOCKS = re.MULTILINE | re.DOTALL  # a report is a block of lines in a log


def sanitizers(logdir, label):
    """Print every ASan or UBSan error and every leak through the engine in the logs
    of LOGDIR; 1 if there are any. Any ASan error counts, wherever it surfaces: only
    the engine is instrumented, but its bad accesses can show up in other code."""
    ours_re = ENGINE_MARKS["sanitizers"]
    errors, leaks, foreign, ub = [], [], [], []
    for path in sorted(glob.glob(os.path.join(logdir, "*"))):
        with open(path, errors="replace") as f:
            text = f.read()
        # a report runs from its first line to ASan's ABORTING line, or to the blank
        # line after a leak's or a runtime error's stack (or to the log's end)
        for m in re.finditer(r"^==\d+==ERROR: AddressSanitizer: .*?(?=^==\d+==ABORTING|\Z)",
                             text, BLOCKS):
            errors.append((path, m.group(0)))
        for m in re.finditer(r"^(Direct|Indirect) leak of .*?(?=^\s*$)", text, BLOCKS):
            (leaks if ours_re.search(m.group(0)) else foreign).append((path, m.group(0)))
        for m in re.finditer(r"^[^\n]*runtime error:.*?(?=^\s*$|\Z)", text, BLOCKS):
            ub.append((path, m.group(0)))
    bad = 0
    for kind, items in (("ASan error", errors), ("UBSan error", ub),
                        ("leak through the engine", leaks)):
        for path, block in items:
            bad += 1
            print(f"---- {label}: {kind} ({os.path.basename(path)})")
            print("\n".join(block.splitlines()[:40]))
    print(f"{label}: {len(errors)} ASan errors, {len(ub)} UBSan errors, "
          f"{len(leaks)} leaks through the engine, {len(foreign)} leak records outside it "
          f"(CPython/numpy; ignored)")
    return 1 if bad else 0


TOOLS = {"valgrind": valgrind, "sanitizers": sanitizers}


def main(argv):
    if len(argv) != 3 or argv[0] not in TOOLS:
        print(f"usage: {sys.argv[0]} valgrind XML NAME | sanitizers LOGDIR LABEL",
              file=sys.stderr)
        return 2
    return TOOLS[argv[0]](argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
