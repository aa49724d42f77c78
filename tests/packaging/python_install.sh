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
"$vpy" - "$src" "$tmp/venv" "$version" <<'EOF' || fail "the installed package"
import importlib.metadata
import os
import sys
import sysconfig

src, venv, version = os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2]), sys.argv[3]

def under(path, root):
    path, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([path, root]) == root

errors = []
if not under(sys.prefix, venv):
    errors.append("sys.prefix %s is not the venv %s" % (sys.prefix, venv))

import lmtp
import lmtp._lmtp

site = {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")}
pkgdir = os.path.dirname(os.path.realpath(lmtp.__file__))
print("lmtp from", lmtp.__file__)
print("lmtp._lmtp from", lmtp._lmtp.__file__)
if os.path.dirname(pkgdir) not in site or not under(pkgdir, venv):
    errors.append("lmtp was imported from %s, not from the venv's site-packages %s" % (pkgdir, sorted(site)))
if under(pkgdir, src):
    errors.append("lmtp was imported from the repository (%s)" % pkgdir)
if os.path.dirname(os.path.realpath(lmtp._lmtp.__file__)) != pkgdir:
    errors.append("lmtp._lmtp (%s) is not in the installed package %s" % (lmtp._lmtp.__file__, pkgdir))
for name in ("__init__.pyi", "py.typed"):
    if not os.path.isfile(os.path.join(pkgdir, name)):
        errors.append("%s is not installed in %s" % (name, pkgdir))
installed = importlib.metadata.version("lmtp")
if installed != version:
    errors.append("installed version %s, lmtp.h says %s" % (installed, version))
files = {str(f) for f in importlib.metadata.files("lmtp")}
for name in ("lmtp/__init__.py", "lmtp/__init__.pyi", "lmtp/py.typed"):
    if name not in files:
        errors.append("%s is not in the distribution's RECORD" % name)
if not any(f.startswith("lmtp/_lmtp.") for f in files):
    errors.append("the extension is not in the distribution's RECORD")

for e in errors:
    print("FAIL:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
cd "$tmp"

# The build happened outside the source tree.
snapshot > "$tmp/after"
diff -u "$tmp/before" "$tmp/after" >&2 ||
    fail "pip install changed $pkg (build/, *.egg-info, an extension or bytecode left behind?)"

echo "python_install: lmtp $version built by pip, installed in a venv, imported from site-packages"
