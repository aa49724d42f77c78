#!/usr/bin/env bash
# build-sdist.sh: the Python source distribution lmtp-<version>.tar.gz, which
# carries the C++ core its extension is built from.
#
#   1. stages, in a temporary directory, what the sdist is made of:
#      SRC/bindings/python without tests/ (and without build products), plus
#      SRC/LICENSE, SRC/core/ and SRC/capi/include/lmtp.h at its top (where
#      bindings/python/CMakeLists.txt and setup.py look before ../..);
#   2. makes the staged tree a throwaway git repository of exactly those files,
#      so check-manifest can compare them with the sdist, and runs it:
#      bindings/python/MANIFEST.in must take in every staged file;
#   3. packs the sdist (python3 -m build --sdist --no-isolation, offline);
#   4. checks it: the version is lmtp.h's; it holds the files the build
#      needs and nothing else (no tests, bench, Perl, cli, packaging); the
#      metadata says MIT, the project URLs, a markdown long description;
#      `twine check --strict` passes;
#   5. puts it into OUTDIR.
# Builds nothing of the extension (packaging/check-sdist.sh does). Offline;
# needs python3-build, python3-setuptools, python3-wheel, twine,
# check-manifest and git (packaging/setup.sh --packaging). About 10 s.
# SRC is not written to.
#
# Usage: packaging/build-sdist.sh SRC OUTDIR
set -euo pipefail

usage() { echo "usage: packaging/build-sdist.sh SRC OUTDIR" >&2; exit 2; }
fail() { echo "build-sdist.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
[ -d "$1" ] || fail "SRC $1 is not a directory"
src=$(cd "$1" && pwd -P)
mkdir -p "$2" || fail "cannot create OUTDIR $2"
out=$(cd "$2" && pwd -P)

# Debian's interpreter (python3-build, setuptools, wheel), never another python3 on PATH.
PY=${LMTP_PYTHON:-/usr/bin/python3}
for tool in "$PY" twine check-manifest git; do
    command -v "$tool" > /dev/null ||
        fail "$tool not found (packaging/setup.sh --packaging installs the packaging tools)"
done
"$PY" -c 'import build, setuptools, wheel' 2> /dev/null ||
    fail "$PY lacks build, setuptools or wheel (apt-get install python3-build python3-setuptools python3-wheel)"

pkg=$src/bindings/python
header=$src/capi/include/lmtp.h
for f in "$pkg/setup.py" "$pkg/pyproject.toml" "$pkg/CMakeLists.txt" "$pkg/MANIFEST.in" \
         "$src/LICENSE" "$header" "$src/core/CMakeLists.txt"; do
    [ -f "$f" ] || fail "$f is missing: is $src a liblmtp source tree?"
done
version=$(sed -n 's/^#define LMTP_VERSION_\(MAJOR\|MINOR\|PATCH\) \+\([0-9]\+\).*/\2/p' "$header" | paste -sd.)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "no MAJOR.MINOR.PATCH in $header: '$version'"
name=lmtp-$version

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-sdist.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Everything the Python tools write (build directories, caches) stays in $tmp.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV
export TMPDIR=$tmp PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
       PIP_NO_INDEX=1 HOME=$tmp/home
mkdir "$tmp/home"

# --- 1. the staged tree -----------------------------------------------------
stage=$tmp/stage/$name
mkdir -p "$stage/capi/include"
tar -C "$pkg" --exclude=./tests --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude='*.py[cod]' --exclude='*.so' -cf - . | tar -C "$stage" -xf -
cp "$src/LICENSE" "$stage/LICENSE"
tar -C "$src" --exclude=__pycache__ -cf - core | tar -C "$stage" -xf -
cp "$header" "$stage/capi/include/lmtp.h"

# --- 2. check-manifest against a git repository of the staged files ----------
git -C "$stage" init -q
git -C "$stage" add -A
started=$SECONDS
check-manifest --python "$PY" --no-build-isolation "$stage" > "$tmp/check-manifest.log" 2>&1 ||
    { cat "$tmp/check-manifest.log" >&2; fail "check-manifest: MANIFEST.in does not match the staged files"; }
echo "check-manifest: $(tail -n 1 "$tmp/check-manifest.log") ($((SECONDS - started)) s)"

# --- 3. the sdist ------------------------------------------------------------
# From a copy of the stage without .git, so nothing but MANIFEST.in decides.
mkdir "$tmp/pack"
tar -C "$tmp/stage" --exclude=.git -cf - "$name" | tar -C "$tmp/pack" -xf -
"$PY" -m build --sdist --no-isolation --outdir "$tmp/dist" "$tmp/pack/$name" > "$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log" >&2; fail "python3 -m build --sdist failed"; }
sdist=$tmp/dist/$name.tar.gz
[ -f "$sdist" ] || { ls -l "$tmp/dist" >&2; fail "python3 -m build made no $name.tar.gz"; }
# A warning of MANIFEST.in (a pattern that matches nothing) is a mistake here.
if grep -i "warning: no \(previously-included \)\?\(files\|directories\) \(found \)\?matching" "$tmp/build.log" >&2; then
    fail "MANIFEST.in has patterns that match nothing (above)"
fi

# --- 4. what it holds --------------------------------------------------------
tar -tzf "$sdist" | sed "s|^$name/||" | grep -v '/$' | grep -v '^$' | LC_ALL=C sort > "$tmp/got"
{
    printf '%s\n' PKG-INFO setup.cfg setup.py pyproject.toml CMakeLists.txt MANIFEST.in README.md LICENSE \
        lmtp.egg-info/PKG-INFO lmtp.egg-info/SOURCES.txt lmtp.egg-info/dependency_links.txt \
        lmtp.egg-info/not-zip-safe lmtp.egg-info/top_level.txt \
        capi/include/lmtp.h core/CMakeLists.txt core/lmtp_version.cmake
    (cd "$pkg" && find lmtp src -type f \( -name '*.py' -o -name '*.pyi' -o -name py.typed -o -name '*.cpp' -o -name '*.hpp' \))
    (cd "$src" && find core/src core/include -type f)
} | LC_ALL=C sort > "$tmp/want"
diff -u "$tmp/want" "$tmp/got" >&2 || fail "$name.tar.gz does not hold exactly the files listed above (- missing, + extra)"
for f in core/src/client.cpp core/include/lmtp/client.hpp src/module.cpp src/aio.cpp src/pool.cpp src/apool.cpp src/binding.hpp lmtp/__init__.py lmtp/aio.py lmtp/pool.py lmtp/apool.py lmtp/__init__.pyi lmtp/py.typed; do
    grep -qx "$f" "$tmp/got" || fail "$name.tar.gz lacks $f"
done
if grep -E '^(tests|bench|bindings|cli|packaging|perl)/|(^|/)t/|\.(pl|pm|xs)$' "$tmp/got" >&2; then
    fail "$name.tar.gz holds files the build does not need (above)"
fi

# The metadata, as PyPI and pip read it.
tar -xzf "$sdist" -C "$tmp" "$name/PKG-INFO"
"$PY" - "$tmp/$name/PKG-INFO" "$version" <<'EOF' || fail "the sdist's metadata (PKG-INFO)"
import email.parser
import sys

path, version = sys.argv[1:]
with open(path, encoding="utf-8") as f:
    meta = email.parser.Parser().parse(f)
errors = []
def want(field, value):
    got = meta.get_all(field) or []
    if value not in got:
        errors.append("%s: %r not in %r" % (field, value, got))
want("Name", "lmtp")
want("Version", version)
want("License", "MIT")
want("Classifier", "License :: OSI Approved :: MIT License")
want("Requires-Python", ">=3.9")
want("Description-Content-Type", "text/markdown")
want("Project-URL", "Homepage, https://github.com/liblmtp/liblmtp")
want("License-File", "LICENSE")
body = meta.get_payload() or meta.get("Description") or ""
if "# lmtp" not in body:
    errors.append("the long description is not bindings/python/README.md")
for e in errors:
    print("PKG-INFO:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

twine check --strict "$sdist" > "$tmp/twine.log" 2>&1 ||
    { cat "$tmp/twine.log" >&2; fail "twine check --strict $name.tar.gz"; }
echo "twine check: $(grep -c PASSED "$tmp/twine.log") passed"

# --- 5. OUTDIR ---------------------------------------------------------------
cp "$sdist" "$out/$name.tar.gz"
echo "build-sdist.sh: $out/$name.tar.gz ($(wc -l < "$tmp/got") files)"
