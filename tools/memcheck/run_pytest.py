"""Run the test suite under AddressSanitizer for tools/sanitize.sh: leaks checked in
this process only, and pytest's exit status written to a file.

    ASAN_OPTIONS=detect_leaks=1:... CM_CHILD_ASAN_OPTIONS=detect_leaks=0:... \\
        python tools/memcheck/run_pytest.py RC_FILE [PYTEST_ARGS...]

sanitize.sh runs it from the scratch copy of the checkout, with libasan preloaded.
ASan reads ASAN_OPTIONS once, when a process starts: setting it here to
CM_CHILD_ASAN_OPTIONS changes it only for the processes the tests start (the CLI
tests check their exit status, which LeakSanitizer would replace when CPython leaks
at exit). LeakSanitizer replaces this process's exit status too, hence RC_FILE.
"""

import os
import sys

import pytest


def main(argv):
    os.environ["ASAN_OPTIONS"] = os.environ.pop("CM_CHILD_ASAN_OPTIONS")
    rc = int(pytest.main(argv[1:]))
    with open(argv[0], "w") as f:
        f.write(str(rc))
    return rc


if __name__ == "__main__":
    # like `python -m pytest`: the working directory first on sys.path, not this folder
    sys.path[0] = os.getcwd()
    sys.exit(main(sys.argv[1:]))
