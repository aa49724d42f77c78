#!/usr/bin/env bash
# Makes liblmtp's packages from a clean copy of the tree, and checks each as it is made.
#
#   packaging/build.sh deb|cpan|sdist|all OUTDIR
#
#   deb    the five Debian packages (liblmtp1, liblmtp-dev, lmtp-send, libnet-lmtp-perl,
#          python3-lmtp) with their .changes and .buildinfo; lintian passed on them
#   cpan   Net-LMTP-<version>.tar.gz, the Perl distribution with the core bundled;
#          make distcheck and make disttest passed
#   sdist  lmtp-<version>.tar.gz, the Python sdist with the core; twine check and
#          check-manifest passed
#   all    the three, and the RPM spec's checks (rpmspec, rpmlint: packaging/rpm/check.sh)
#
# The copy holds the files git tracks (with their uncommitted changes) and the untracked
# files git does not ignore; without git, the whole tree but build directories. Nothing
# is written into the tree itself. Installs the tools it needs (packaging/setup.sh
# --packaging). DEB_BUILD_OPTIONS is passed on (nocheck skips the tests run during the
# Debian build). Exits non-zero as soon as a build or a check fails.
set -euo pipefail

usage() { echo "usage: packaging/build.sh deb|cpan|sdist|all OUTDIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
kind=$1
case "$kind" in deb|cpan|sdist|all) ;; *) usage ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)

"$root/packaging/setup.sh" --packaging

work=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A clean copy of the tree in $work/<kind>: each build gets its own, as each may change it.
copy_tree() {
    local dest=$1
    mkdir -p "$dest"
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked files that still exist, and untracked ones that are not ignored.
        (cd "$root" && git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -C "$dest" -xf -
    else
        (cd "$root" && tar --exclude='./build*' --exclude='./_build' --exclude='./.git' -cf - .) |
            tar -C "$dest" -xf -
    fi
}

run_kind() {
    local k=$1 src="$work/$1"
    echo "build.sh: $k"
    copy_tree "$src"
    "$root/packaging/build-$k.sh" "$src" "$out"
}

case "$kind" in
    all)
        for k in deb cpan sdist; do run_kind "$k"; done
        "$root/packaging/rpm/check.sh"
        ;;
    *) run_kind "$kind" ;;
esac
echo "build.sh: $kind done: $out"
ls -1 "$out"
