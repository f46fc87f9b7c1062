"""Build of the compiled engine, cmicrograd._engine (src/_engine.pyx).

The flags keep C's floating point identical to Python's, so both engines give the same
bits: no FMA contraction (gcc contracts by default on aarch64, clang everywhere), no
rewriting of pow() (glibc's pow(x, -1) is not always 1/x), and never -ffast-math or
-march=native.

Set CMICROGRAD_PURE_PYTHON=1 to install without compiling (the pure engine only).
Otherwise a failed compile fails the install: we never ship a silent fallback.
"""

import os
import sys

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def extensions():
    if _flag("CMICROGRAD_PURE_PYTHON"):
        print("CMICROGRAD_PURE_PYTHON is set: building without the compiled engine")
        return []
    from Cython.Build import cythonize

    if sys.platform == "win32":
        compile_args = ["/fp:precise"]  # MSVC: no contraction unless /fp:contract
    else:
        compile_args = ["-ffp-contract=off", "-fno-builtin-pow", "-fno-fast-math"]
    compile_args += os.environ.get("CMICROGRAD_EXTRA_CFLAGS", "").split()
    link_args = os.environ.get("CMICROGRAD_EXTRA_LDFLAGS", "").split()
    ext = Extension(
        "cmicrograd._engine",
        sources=["src/_engine.pyx"],
        include_dirs=["src"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    return cythonize(
        [ext],
        compiler_directives={"language_level": "3"},
        include_path=["src"],
    )


setup(ext_modules=extensions())
