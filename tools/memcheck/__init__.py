"""The programs tools/valgrind.sh and tools/sanitize.sh run; the scripts only build,
set the environment and call these files by path.

* scenarios.py: the memory scenarios, one per process, under valgrind or ASan.
* report.py: which of valgrind's or the sanitizers' records are the engine's doing.
* run_pytest.py: the test suite under ASan (sanitize.sh), leaks checked in its own
  process only.
* asan_value_alloc.h: the Value allocator ASan can see, force-included into
  sanitize.sh's build.
* build_requirements.py: pyproject.toml's build requirements, for the scratch builds
  (memcheck_common.sh).

Each Python file is a script and an importable module (``import
tools.memcheck.scenarios`` from the checkout's root runs nothing). The scripts run them
by path, never with ``-m``: ``-m`` would put the working directory first on sys.path,
and with it the checkout's cmicrograd instead of the scratch build under test.
"""
