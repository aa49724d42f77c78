#!/usr/bin/env bash
# python_install: pip install of bindings/python, offline, as a user would do it.
#   1. a venv (--system-site-packages, so Debian's setuptools, wheel and
#      pybind11 are visible) in a temporary directory;
#   2. pip install --no-build-isolation --no-index <repo>/bindings/python, which
#      builds lmtp._lmtp with the repository's CMake (bindings/python/setup.py);
#   3. from a neutral directory, `import lmtp` finds the INSTALLED package in the
#      venv's site-packages, with its extension, __init__.pyi and py.typed, and
#      the installed version is lmtp.h's;
#   4. the build left nothing in the source tree: bindings/python lists the same
#      files before and after, and so does git status --ignored.
# Usage: python_install.sh PYTHON SOURCE_DIR
set -euo pipefail
python=$1 src=$(cd "$2" && pwd -P)
pkg=$src/bindings/python
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-python-install.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The state of the source tree before the build. --ignored: *.so and
# __pycache__ are in .gitignore, and a leftover must not hide there.
snapshot() {
    (cd "$pkg" && find . -print | LC_ALL=C sort)
    if git -C "$src" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
        echo "--- git status"
        git -C "$src" status --porcelain --ignored --untracked-files=all -- bindings/python
    fi
}
snapshot > "$tmp/before"

# The environment of the build and of the checks: nothing from the caller's
# Python set-up, every temporary file (setup.py's build directory too) in $tmp.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE PYTHONNOUSERSITE VIRTUAL_ENV PIP_REQUIRE_VIRTUALENV
export TMPDIR=$tmp PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

"$python" -m venv --system-site-packages "$tmp/venv" > "$tmp/venv.log" 2>&1 ||
    { cat "$tmp/venv.log" >&2; fail "$python -m venv (Debian: apt-get install python3-venv)"; }
vpy=$tmp/venv/bin/python
[ -x "$vpy" ] || fail "the venv has no bin/python"

started=$SECONDS
"$vpy" -m pip install -v --no-build-isolation --no-index --no-cache-dir "$pkg" > "$tmp/pip.log" 2>&1 ||
    { cat "$tmp/pip.log" >&2; fail "pip install --no-build-isolation --no-index $pkg"; }
grep -q "Successfully installed lmtp" "$tmp/pip.log" ||
    { cat "$tmp/pip.log" >&2; fail "pip did not install lmtp"; }
# setup.py configured CMake for the venv's interpreter, not CMake's default one.
grep -q -- "-DPython_EXECUTABLE=$tmp/venv/bin/python" "$tmp/pip.log" ||
    { cat "$tmp/pip.log" >&2; fail "the extension was not configured for $vpy"; }
echo "pip install: $((SECONDS - started)) s"

# The version lmtp.h declares, which the installed distribution must carry.
version=$(sed -n 's/^#define LMTP_VERSION_\(MAJOR\|MINOR\|PATCH\) \+\([0-9]\+\).*/\2/p' \
              "$src/capi/include/lmtp.h" | paste -sd.)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "no version in lmtp.h: '$version'"

mkdir "$tmp/neutral"
cd "$tmp/neutral"
"$vpy" "$src/tests/packaging/check_lmtp_installed.py" "$tmp/venv" "$src" "$version" ||
    fail "the installed package"
cd "$tmp"

# The build happened outside the source tree.
snapshot > "$tmp/after"
diff -u "$tmp/before" "$tmp/after" >&2 ||
    fail "pip install changed $pkg (build/, *.egg-info, an extension or bytecode left behind?)"

echo "python_install: lmtp $version built by pip, installed in a venv, imported from site-packages"
