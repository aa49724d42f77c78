#!/usr/bin/env bash
# Builds the CPAN distribution Net-LMTP-<version>.tar.gz: bindings/perl with the liblmtp sources
# it compiles bundled under liblmtp/ (core/src, core/include, capi/lmtp.cpp, capi/include/lmtp.h),
# the test servers' sources (liblmtp/tests/support) and LICENSE, so that it builds with a C++17
# compiler and OpenSSL alone. What is bundled is listed once, in packaging/cpan/bundle.pl.
#
#   packaging/build-cpan.sh SRC OUTDIR
#
# SRC is a copy of the source tree (it is only read: the distribution is staged in a temporary
# directory, from the files bindings/perl/MANIFEST lists plus the bundled ones, which are added
# to the staged MANIFEST). There it runs `perl Makefile.PL`, `make distcheck` (any file missing
# from or extra to MANIFEST fails), `make disttest` (the distdir builds the bundled core and the
# test servers and runs the tests) and `make dist`, checks what the tarball holds and puts it in
# OUTDIR. Takes about 1.7 minutes on 2 idle cores (2.2 under load). Needs perl, make, g++, libssl-dev.
set -euo pipefail

die() { echo "build-cpan.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: packaging/build-cpan.sh SRC OUTDIR"
src=$(cd "$1" 2>/dev/null && pwd) || die "no source tree at $1"
mkdir -p "$2" || die "cannot create $2"
out=$(cd "$2" && pwd)
perl_src=$src/bindings/perl
[ -f "$perl_src/Makefile.PL" ] && [ -f "$perl_src/MANIFEST" ] || die "$src is not a liblmtp source tree (no bindings/perl/MANIFEST)"
for f in LICENSE capi/lmtp.cpp capi/include/lmtp.h core/include/lmtp core/src; do
    [ -e "$src/$f" ] || die "$src/$f is missing"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/build-cpan.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/Net-LMTP
mkdir -p "$stage"

# What MANIFEST lists (comments after the name dropped), and nothing else.
while IFS= read -r line; do
    case $line in ''|'#'*) continue ;; esac
    name=${line%%[[:space:]]*}
    [ -f "$perl_src/$name" ] || die "bindings/perl/MANIFEST lists $name, which does not exist"
    mkdir -p "$stage/$(dirname "$name")"
    cp -p "$perl_src/$name" "$stage/$name"
done < "$perl_src/MANIFEST"

# The bundled sources (liblmtp/, as they are laid out in the source tree) and LICENSE, added to
# the staged MANIFEST: the list make dist uses in a source tree too.
perl "$src/packaging/cpan/bundle.pl" "$src" "$stage" > "$work/bundle.log" || { cat "$work/bundle.log" >&2; die "bundle.pl failed"; }
LC_ALL=C sort -f -o "$stage/MANIFEST" "$stage/MANIFEST"
chmod -R u+rwX,go+rX,go-w "$stage"

# The tests use the tarball's own servers, never ones from the environment, and a missing
# Dovecot is a skip here, not a failure.
unset LMTP_FAKE_SERVER LMTP_NSM_SERVER LMTP_DOVECOT LMTP_TEST_STRICT LMTP_BUILD_DIR
jobs=$(nproc)
export HARNESS_OPTIONS=j2 MAKEFLAGS="-j$jobs"

cd "$stage"
log=$work/log
run() {    # run STEP COMMAND...: the output goes to $log, and to stderr on failure
    local step=$1
    shift
    if ! "$@" > "$log.$step" 2>&1; then
        cat "$log.$step" >&2
        die "$step failed"
    fi
}
run makefile-pl perl Makefile.PL
grep -q '^Net::LMTP: liblmtp bundled' "$log.makefile-pl" || { cat "$log.makefile-pl" >&2; die "Makefile.PL did not choose the bundled core"; }
version=$(perl -MExtUtils::MakeMaker -le 'print MM->parse_version(shift)' lib/Net/LMTP.pm)
dist=Net-LMTP-$version

run distcheck make distcheck
if grep -E '^(Not in MANIFEST|No such file):' "$log.distcheck" >&2; then
    die "MANIFEST and the staged files differ (above)"
fi
# LMTP_CPAN_DISTTEST=0 leaves disttest out, for a caller that builds and tests the tarball itself
# right after (packaging/test.sh runs check-cpan.sh: the same build and tests, from the tarball alone).
if [ "${LMTP_CPAN_DISTTEST:-1}" = 0 ]; then
    tests="nothing (left out: LMTP_CPAN_DISTTEST=0)"
else
    run disttest make disttest
    grep -q '^Net::LMTP: liblmtp bundled' "$log.disttest" || die "disttest did not build the bundled core"
    grep -q '^Result: PASS' "$log.disttest" || { cat "$log.disttest" >&2; die "disttest: no 'Result: PASS'"; }
    tests=$(sed -n 's/^Files=\([0-9]*\), Tests=\([0-9]*\).*/\1 files, \2 tests/p' "$log.disttest")
fi
rm -rf "$dist"
run dist make dist
[ -f "$dist.tar.gz" ] || die "make dist made no $dist.tar.gz"

# What the tarball holds: the bundled sources, and no build products.
tar -tzf "$dist.tar.gz" > "$work/contents"
for f in Makefile.PL MANIFEST META.json META.yml LICENSE lib/Net/LMTP.pm lib/Net/LMTP/Pool.pm LMTP.xs \
         liblmtp/capi/include/lmtp.h liblmtp/capi/lmtp.cpp liblmtp/core/src/client.cpp \
         liblmtp/tests/support/fake_main.cpp t/lib/LMTPTest.pm; do
    grep -qx "$dist/$f" "$work/contents" || die "$dist.tar.gz has no $f"
done
if grep -E '\.(o|so|bs)$|/(blib|t/bin)/|/(Makefile|MYMETA\.[a-z]+|LMTP\.c)$' "$work/contents" >&2; then
    die "$dist.tar.gz holds build products (above)"
fi

cp "$dist.tar.gz" "$out/"
echo "build-cpan.sh: disttest ran $tests"
echo "build-cpan.sh: $out/$dist.tar.gz"
