#!/usr/bin/env bash
# cpan_make_dist: `make dist` of Net::LMTP configured in a source tree (here against a CMake
# build, --lmtp-build) makes a tarball that carries the liblmtp sources: it has every file
# packaging/cpan/bundle.pl bundles, its MANIFEST lists exactly what it holds, and its
# Makefile.PL chooses the bundled core.
# Usage: cpan_make_dist.sh SOURCE_DIR BUILD_DIR PERL MAKE
set -euo pipefail
src=$1 build=$2 perl=$3 make=$4
fail() { echo "cpan_make_dist: FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-cpan-dist.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/perl"
cp -R "$src/bindings/perl/." "$tmp/perl/"
cd "$tmp/perl"
"$perl" Makefile.PL --lmtp-build="$build" > makefile-pl.log 2>&1 || { cat makefile-pl.log; fail "Makefile.PL"; }
"$make" dist > dist.log 2>&1 || { cat dist.log; fail "make dist"; }
version=$("$perl" -MExtUtils::MakeMaker -le 'print MM->parse_version(shift)' lib/Net/LMTP.pm)
tarball=Net-LMTP-$version.tar.gz
[ -f "$tarball" ] || fail "make dist made no $tarball"

mkdir "$tmp/x"
tar -C "$tmp/x" -xzf "$tarball"
dist=$tmp/x/Net-LMTP-$version
[ -d "$dist" ] || fail "$tarball does not unpack into Net-LMTP-$version/"

# What the tarball must bundle: the same list, applied to an empty directory.
mkdir "$tmp/want"
echo "# what bundle.pl adds" > "$tmp/want/MANIFEST"
"$perl" "$src/packaging/cpan/bundle.pl" "$src" "$tmp/want" > /dev/null
n=0
while read -r f _; do
    case $f in ''|'#'*) continue ;; esac
    [ -f "$dist/$f" ] || fail "$tarball has no $f"
    cmp -s "$src/${f#liblmtp/}" "$dist/$f" || [ "$f" = LICENSE ] || fail "$f differs from the source tree"
    n=$((n + 1))
done < "$tmp/want/MANIFEST"
[ "$n" -gt 20 ] || fail "only $n files bundled"

# MANIFEST lists exactly the files of the tarball.
(cd "$dist" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) > "$tmp/files"
sed -e 's/[[:space:]].*//' -e '/^$/d' -e '/^#/d' "$dist/MANIFEST" | LC_ALL=C sort > "$tmp/listed"
diff -u "$tmp/listed" "$tmp/files" || fail "the tarball's MANIFEST and its files differ (above)"

(cd "$dist" && "$perl" Makefile.PL > "$tmp/dist-makefile-pl.log" 2>&1) || { cat "$tmp/dist-makefile-pl.log"; fail "the tarball's Makefile.PL"; }
grep -q '^Net::LMTP: liblmtp bundled' "$tmp/dist-makefile-pl.log" || { cat "$tmp/dist-makefile-pl.log"; fail "the tarball does not choose the bundled core"; }
echo "cpan_make_dist: $tarball bundles $n files, its MANIFEST lists the $(wc -l < "$tmp/files") it holds, and it builds bundled"
