#!/usr/bin/env bash
# check-sdist.sh: the Python sdist OUTDIR/lmtp-<version>.tar.gz as its users
# build and install it, offline, against this checkout's Python test suite.
#
#   1. unpacks the sdist alone in a temporary directory (no checkout in reach);
#   2. pip wheel --no-build-isolation --no-index from it, with Debian's build
#      flags in the environment (dpkg-buildflags, hardening=+all): every
#      compile command has CPPFLAGS and CXXFLAGS (their -O2 last), the link
#      has LDFLAGS, and hardening-check passes on the extension (control-flow
#      protection required only when the flags have -fcf-protection); the unpacked
#      tree is left as it was; twine check --strict on the wheel;
#   3. installs the wheel into a fresh venv (--system-site-packages, for
#      Debian's pytest), proves `import lmtp` loads the venv's copy (package,
#      extension, stubs, version of lmtp.h, LICENSE in its metadata), and runs
#      bindings/python/tests of the checkout from a neutral directory against
#      it, strict (a missing server fails), a pytest plugin checking again
#      that the lmtp under test is the venv's; no test may be skipped;
#   4. pip install of the sdist file with build isolation, offline
#      (--no-index --find-links /usr/share/python-wheels: Debian's
#      python3-setuptools-whl and python3-wheel-whl), into another fresh venv,
#      and a part of the suite (import, stubs, messages through the fake
#      server) against that copy.
# About 4 minutes on 2 cores (measured 247 s: two builds of the extension, about
# 85 s each, the full suite about 85 s, a quarter of it again in the isolated venv).
#
# Usage: packaging/check-sdist.sh OUTDIR BUILD
#   OUTDIR  holds lmtp-<version>.tar.gz (packaging/build-sdist.sh)
#   BUILD   a CMake build tree of this checkout: BUILD/tests/support/fake-lmtp
# Needs: python3-venv, python3-pip, python3-pytest, python3-setuptools,
# python3-wheel, python3-wheel-whl, python3-setuptools-whl, pybind11-dev,
# cmake, g++, libssl-dev, python3-dev, dpkg-dev, devscripts, twine, dovecot
# (packaging/setup.sh --packaging).
set -euo pipefail

usage() { echo "usage: packaging/check-sdist.sh OUTDIR BUILD" >&2; exit 2; }
fail() { echo "check-sdist.sh: FAIL: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
[ -d "$1" ] || fail "OUTDIR $1 is not a directory"
[ -d "$2" ] || fail "BUILD $2 is not a directory"
out=$(cd "$1" && pwd -P)
build=$(cd "$2" && pwd -P)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PY=/usr/bin/python3   # Debian's, with its pip, pytest, setuptools, wheel and pybind11
WHEELS=/usr/share/python-wheels
total_started=$SECONDS

version=$(sed -n 's/^#define LMTP_VERSION_\(MAJOR\|MINOR\|PATCH\) \+\([0-9]\+\).*/\2/p' \
              "$root/capi/include/lmtp.h" | paste -sd.)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "no version in $root/capi/include/lmtp.h: '$version'"
name=lmtp-$version
sdist=$out/$name.tar.gz
[ -f "$sdist" ] || fail "no $sdist (packaging/build-sdist.sh SRC $out makes it)"

fake=$build/tests/support/fake-lmtp
[ -x "$fake" ] || fail "no fake server $fake: build the tree $build first"
for tool in cmake hardening-check dpkg-buildflags twine; do
    command -v "$tool" > /dev/null || fail "$tool not found (packaging/setup.sh --packaging)"
done
for whl in setuptools wheel; do
    compgen -G "$WHEELS/$whl-*.whl" > /dev/null ||
        fail "no $whl wheel in $WHEELS for the isolated offline build (apt-get install python3-$whl-whl)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-check-sdist.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
# pytest's temporary directories (the suite's Dovecot puts unix sockets there,
# whose paths must stay under 108 bytes): short, under /tmp whatever TMPDIR is.
pytmp=$(mktemp -d /tmp/lmtp-pt.XXXXXX)
trap 'rm -rf "$tmp" "$pytmp"' EXIT
# Nothing from the caller's Python set-up; every temporary file in $tmp.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV PIP_REQUIRE_VIRTUALENV \
      CMAKE_ARGS CFLAGS CXXFLAGS CPPFLAGS LDFLAGS DEB_BUILD_MAINT_OPTIONS DEB_CXXFLAGS_APPEND
export TMPDIR=$tmp HOME=$tmp/home PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
       PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
mkdir "$tmp/home" "$tmp/neutral"

# The suite's servers, as ctest gives them.
export LMTP_FAKE_SERVER=$fake LMTP_DOVECOT=$root/tests/support/dovecot.sh \
       LMTP_NSM_SERVER=$root/tests/support/nsm-lmtp.pl LMTP_TEST_STRICT=1

# --- 1. the sdist alone ------------------------------------------------------
mkdir "$tmp/unpacked"
tar -xzf "$sdist" -C "$tmp/unpacked"
tree=$tmp/unpacked/$name
[ -f "$tree/setup.py" ] || fail "$name.tar.gz has no $name/setup.py"
snapshot() { (cd "$tree" && find . -printf '%p %s %T@\n' | LC_ALL=C sort); }
snapshot > "$tmp/tree.before"

# --- 2. the wheel, with Debian's build flags ---------------------------------
started=$SECONDS
(
    cd "$tree"
    eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
    printf '%s\n' "$CPPFLAGS" > "$tmp/cppflags"
    printf '%s\n' "$CXXFLAGS" > "$tmp/cxxflags"
    printf '%s\n' "$LDFLAGS" > "$tmp/ldflags"
    # Kept, to read the compile commands (setup.py removes its own).
    export LMTP_SETUP_BUILD_BASE=$tmp/setup-build CMAKE_ARGS=-DCMAKE_EXPORT_COMPILE_COMMANDS=ON
    "$PY" -m pip wheel -v --no-build-isolation --no-index --no-deps -w "$tmp/wheels" "$tree"
) > "$tmp/wheel.log" 2>&1 || { tail -n 60 "$tmp/wheel.log" >&2; fail "pip wheel --no-build-isolation --no-index $name"; }
wheels=("$tmp"/wheels/lmtp-"$version"-*.whl)
if [ ${#wheels[@]} -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    ls -l "$tmp/wheels" >&2
    fail "pip wheel made no single lmtp-$version wheel"
fi
wheel=${wheels[0]}
echo "pip wheel from the sdist: $(basename "$wheel") ($((SECONDS - started)) s)"

snapshot > "$tmp/tree.after"
diff -u "$tmp/tree.before" "$tmp/tree.after" >&2 ||
    fail "building the wheel changed the unpacked sdist (build/, *.egg-info, an extension left behind?)"

# Every object got the environment's flags, after the build type's; the link got LDFLAGS.
"$PY" - "$tmp/setup-build" "$tmp/cppflags" "$tmp/cxxflags" "$tmp/ldflags" <<'EOF' || fail "the build flags"
import glob, json, os, shlex, sys
base, cppflags, cxxflags, ldflags = sys.argv[1], *(open(p).read().split() for p in sys.argv[2:])
errors = []
dbs = glob.glob(os.path.join(base, "**", "compile_commands.json"), recursive=True)
if len(dbs) != 1:
    sys.exit("FAIL: %d compile_commands.json under %s" % (len(dbs), base))
commands = json.load(open(dbs[0]))
sources = sorted(os.path.basename(c["file"]) for c in commands)
if "module.cpp" not in sources or "client.cpp" not in sources:
    errors.append("the compile commands miss module.cpp or the core: %s" % sources)
for c in commands:
    args = shlex.split(c["command"])
    for flag in cppflags + cxxflags:
        if flag not in args:
            errors.append("%s: %s missing" % (os.path.basename(c["file"]), flag))
    levels = [a for a in args if a.startswith("-O")]
    if not levels or levels[-1] != "-O2":
        errors.append("%s: optimisation flags %s, the environment's -O2 not last" % (os.path.basename(c["file"]), levels))
    if any(a.startswith("-flto") for a in args):
        errors.append("%s: built with LTO" % os.path.basename(c["file"]))
links = glob.glob(os.path.join(base, "**", "_lmtp.dir", "link.txt"), recursive=True)
if len(links) != 1:
    errors.append("%d link commands of _lmtp found" % len(links))
else:
    args = shlex.split(open(links[0]).read())
    for flag in ldflags:
        if flag not in args:
            errors.append("the link of _lmtp: %s missing" % flag)
for e in errors:
    print("FAIL:", e, file=sys.stderr)
print("compile commands: %d objects with CPPFLAGS and CXXFLAGS, the link with LDFLAGS" % len(commands))
sys.exit(1 if errors else 0)
EOF
mkdir "$tmp/wheel"
(cd "$tmp/wheel" && "$PY" -m zipfile -e "$wheel" .)
so=$(find "$tmp/wheel/lmtp" -name '_lmtp.*.so')
[ -n "$so" ] || fail "the wheel has no lmtp/_lmtp.*.so"
# Control-flow protection only when the flags ask for it: Debian 12's
# dpkg-buildflags (1.21) has no -fcf-protection, later ones add it on amd64.
# (A shared library is not PIE: hardening-check ignores that line itself.)
hc_opts=()
grep -q -- '-fcf-protection' "$tmp/cxxflags" || hc_opts+=(--nocfprotection)
hardening-check "${hc_opts[@]}" "$so" > "$tmp/hardening.log" 2>&1 ||
    { cat "$tmp/hardening.log" >&2; fail "hardening-check ${hc_opts[*]} on the extension"; }
echo "hardening-check: $(grep -c ': yes' "$tmp/hardening.log") checks yes, none failed"
twine check --strict "$wheel" > "$tmp/twine.log" 2>&1 || { cat "$tmp/twine.log" >&2; fail "twine check --strict on the wheel"; }
echo "twine check (wheel): passed"

# --- 3. the wheel in a fresh venv, and the suite against it ------------------
# prove_installed VENV: `import lmtp` in VENV's python, from a neutral
# directory, is the copy installed in VENV's site-packages, complete, with the LICENSE.
prove_installed() {
    (cd "$tmp/neutral" && "$1/bin/python" "$root/tests/packaging/check_lmtp_installed.py" \
        "$1" "$root" "$version" --license-file) || fail "the lmtp installed in $1"
}

# A pytest plugin: the lmtp the tests import is the venv's, or the run fails.
mkdir "$tmp/plugin"
cat > "$tmp/plugin/lmtp_origin.py" <<'EOF'
"""Fails the session unless the lmtp under test comes from $LMTP_EXPECT_PREFIX."""
import os
import sys

import pytest


def pytest_collection_finish(session):
    mod = sys.modules.get("lmtp")
    want = os.path.realpath(os.environ["LMTP_EXPECT_PREFIX"])
    where = os.path.realpath(getattr(mod, "__file__", "") or "")
    if mod is None or os.path.commonpath([where, want]) != want:
        pytest.exit("the lmtp under test is %s, not the one in %s" % (where or None, want), returncode=3)
    print("\nlmtp under test: %s" % where)
EOF

# run_suite VENV LOG [TEST FILES...]: the checkout's suite (or some of its
# files) under VENV's python, from the neutral directory; every test passes,
# none is skipped. Prints the count.
run_suite() {
    local venv=$1 log=$2; shift 2
    local base
    base=$(mktemp -d "$pytmp/XXXX")
    local tests=("$@")
    [ ${#tests[@]} -gt 0 ] || tests=("$root/bindings/python/tests")
    (cd "$tmp/neutral" &&
        PYTHONPATH=$tmp/plugin LMTP_EXPECT_PREFIX=$venv "$venv/bin/python" -m pytest -q -rfEs \
            -p no:cacheprovider -p lmtp_origin --basetemp="$base" "${tests[@]}") > "$log" 2>&1 ||
        { tail -n 80 "$log" >&2; fail "pytest under $venv"; }
    local summary
    summary=$(tail -n 1 "$log")
    grep -q "^lmtp under test: $venv/" "$log" || { cat "$log" >&2; fail "the origin check did not run"; }
    local passed
    [[ $summary =~ ^=*\ *([0-9]+)\ passed ]] || fail "pytest summary: $summary"
    passed=${BASH_REMATCH[1]}
    ! [[ $summary =~ skipped|failed|error|xfail|xpass|deselected ]] || fail "pytest summary: $summary"
    echo "$passed"
}

started=$SECONDS
"$PY" -m venv --system-site-packages "$tmp/venv" > "$tmp/venv.log" 2>&1 ||
    { cat "$tmp/venv.log" >&2; fail "$PY -m venv (apt-get install python3-venv)"; }
# --ignore-installed: an lmtp visible through the system site-packages (a
# python3-lmtp package) must not stand in for the wheel.
"$tmp/venv/bin/python" -m pip install --no-index --no-deps --ignore-installed "$wheel" > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "pip install of the wheel into a fresh venv"; }
prove_installed "$tmp/venv"
count=$(run_suite "$tmp/venv" "$tmp/pytest.log")
echo "the suite against the wheel: $count passed, none skipped ($((SECONDS - started)) s)"

# --- 4. the sdist with build isolation, offline --------------------------------
started=$SECONDS
"$PY" -m venv --system-site-packages "$tmp/venv2" > "$tmp/venv2.log" 2>&1 ||
    { cat "$tmp/venv2.log" >&2; fail "$PY -m venv"; }
"$tmp/venv2/bin/python" -m pip install -v --no-index --ignore-installed --find-links "$WHEELS" "$sdist" > "$tmp/isolated.log" 2>&1 ||
    { tail -n 60 "$tmp/isolated.log" >&2; fail "pip install --no-index --find-links $WHEELS $name.tar.gz (build isolation)"; }
grep -q "Installing build dependencies" "$tmp/isolated.log" || fail "pip did not build $name in isolation"
grep -q "Successfully installed lmtp-$version" "$tmp/isolated.log" || fail "pip did not install lmtp $version"
prove_installed "$tmp/venv2"
t=$root/bindings/python/tests
count=$(run_suite "$tmp/venv2" "$tmp/pytest2.log" "$t/test_import.py" "$t/test_stubs.py" "$t/test_messages.py" "$t/test_batch.py")
echo "isolated offline install: $count tests passed against it ($((SECONDS - started)) s)"

echo "check-sdist.sh: $name.tar.gz built, installed and tested ($((SECONDS - total_started)) s)"
