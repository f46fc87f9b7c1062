"""Print pyproject.toml's [build-system] requires, one a line.

    python tools/memcheck/build_requirements.py PYPROJECT

tools/memcheck_common.sh (install_build_requirements) installs them with pip --target,
so that valgrind.sh and sanitize.sh can build the engine in a scratch copy without
setuptools or Cython in the interpreter under test. Runs on Python 3.9+: before 3.11
there is no tomllib, and a regular expression reads the list instead.
"""

import re
import sys

# the answer without tomllib when no requires list is found (tomllib raises instead)
FALLBACK = ["Cython>=3.1,<4"]


def build_requirements(text):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        m = re.search(r"^\[build-system\][^\[]*?requires\s*=\s*\[(.*?)\]", text,
                      re.MULTILINE | re.DOTALL)
        return re.findall(r'"([^"]+)"', m.group(1)) if m else FALLBACK
    return tomllib.loads(text)["build-system"]["requires"]


def main(argv):
    if len(argv) != 1:
        print(f"usage: {sys.argv[0]} PYPROJECT", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print("\n".join(build_requirements(f.read())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
