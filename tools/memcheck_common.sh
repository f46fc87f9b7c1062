# Sourced by tools/sanitize.sh and tools/valgrind.sh, which define die().
#
#   MEMCHECK
# the folder of the programs those scripts run: tools/memcheck/ (see its __init__.py).
#
#   find_python ROOT
# sets PY to the interpreter to test with: $PYTHON, else ROOT/.venv or ROOT/venv, else
# python3, resolved to the interpreter itself (not a wrapper that may pick another one).
#
#   copy_checkout ROOT DEST
# copies the checkout's tracked and untracked, non-ignored files (or, outside git, the
# tree without venvs and build products) to DEST, to build there and leave ROOT alone.
#
#   install_build_requirements PYTHON ROOT TARGET PREFIX
# installs pyproject.toml's [build-system] requires (setuptools, Cython) into TARGET with
# pip --target, as pip's isolated builds would, so that a scratch build of the engine
# needs nothing installed in PYTHON itself. PREFIX names the calling script in messages.

MEMCHECK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/memcheck"

install_build_requirements() {
    local py=$1 root=$2 target=$3 prefix=$4 reqs
    reqs="$("$py" "$MEMCHECK/build_requirements.py" "$root/pyproject.toml")" \
        || { echo "$prefix: cannot read $root/pyproject.toml" >&2; return 2; }
    local -a arr
    mapfile -t arr <<< "$reqs"
    echo "$prefix: installing the build requirements (${arr[*]}) into $target"
    "$py" -m pip install --quiet --disable-pip-version-check --target "$target" \
        "${arr[@]}" > "$target.pip.log" 2>&1 \
        || { cat "$target.pip.log"; echo "$prefix: could not install the build requirements" >&2; return 2; }
}

find_python() {
    local root=$1
    if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
    elif [ -x "$root/.venv/bin/python" ]; then PY="$root/.venv/bin/python"
    elif [ -x "$root/venv/bin/python" ]; then PY="$root/venv/bin/python"
    else PY="$(command -v python3)" || die "no python3 found (set PYTHON)"
    fi
    PY="$("$PY" -c 'import sys; print(sys.executable)')" || die "$PY does not run"
}

copy_checkout() {
    local root=$1 dest=$2
    mkdir -p "$dest"
    if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$root" && git ls-files -z --cached --others --exclude-standard) \
            | (cd "$root" && xargs -0 -r cp --parents -t "$dest" 2>/dev/null) || true
    else
        tar -C "$root" --exclude=./.git --exclude=./venv --exclude=./.venv --exclude=./build \
            --exclude='*.so' --exclude='src/_engine.c' -cf - . | tar -C "$dest" -xf -
    fi
    [ -f "$dest/setup.py" ] || die "could not copy the checkout to $dest"
}
