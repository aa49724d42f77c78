#!/usr/bin/env bash
# Checks the CPAN distribution the way a CPAN client uses it: the tarball alone, unpacked in a
# temporary directory, with no CMake (a stand-in cmake that fails is first on PATH) and no
# liblmtp known to pkg-config. Runs `perl Makefile.PL && make && make test && make install`
# (installed under a temporary INSTALL_BASE), then:
#   - make test: every test file ran and passed, none skipped wholesale and no subtest skipped,
#     except the parts that need Dovecot when LMTP_DOVECOT is not set (set it to the checkout's
#     tests/support/dovecot.sh to run those too); at least MIN_TESTS (200) tests;
#   - the installed LMTP.so: the bundled core, no liblmtp.so dependency, no rpath, and only
#     boot_Net__LMTP exported;
#   - the installed module, loaded from the temporary prefix (proven), delivers a message to
#     the fake server the tarball built (t/bin/fake-lmtp): one recipient accepted, one refused.
#
#   packaging/check-cpan.sh OUTDIR      (OUTDIR holds exactly one Net-LMTP-<version>.tar.gz)
#
# Takes about 1.6 minutes on 2 idle cores, 2.3 under load (compiling the core, then make test).
# Needs perl, make, g++, libssl-dev, pkg-config, binutils.
set -euo pipefail

die() { echo "check-cpan.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: packaging/check-cpan.sh OUTDIR"
out=$(cd "$1" 2>/dev/null && pwd) || die "no directory $1"
shopt -s nullglob
tarballs=("$out"/Net-LMTP-*.tar.gz)
shopt -u nullglob
[ ${#tarballs[@]} -eq 1 ] || die "expected one Net-LMTP-*.tar.gz in $out, found ${#tarballs[@]}"
tarball=${tarballs[0]}
dist=$(basename "$tarball" .tar.gz)
min_tests=${MIN_TESTS:-200}

work=$(mktemp -d "${TMPDIR:-/tmp}/check-cpan.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/pkgconfig" "$work/unpack"

# No CMake, no liblmtp from pkg-config, none of the project's servers or build trees.
cat > "$work/bin/cmake" <<EOF
#!/bin/sh
echo "cmake \$*" >> "$work/cmake-used"
echo "check-cpan.sh: the CPAN distribution must build without cmake" >&2
exit 127
EOF
chmod +x "$work/bin/cmake"
export PATH="$work/bin:$PATH" PKG_CONFIG_PATH="$work/pkgconfig" PKG_CONFIG_LIBDIR="$work/pkgconfig"
unset PKG_CONFIG_SYSROOT_DIR LMTP_BUILD_DIR LMTP_FAKE_SERVER LMTP_NSM_SERVER LMTP_TEST_STRICT \
      PERL5LIB PERL_MM_OPT PERL_MB_OPT PERL_LOCAL_LIB_ROOT PERL5OPT MAKEFLAGS
if [ -n "${LMTP_DOVECOT:-}" ]; then
    [ -f "$LMTP_DOVECOT" ] || die "LMTP_DOVECOT=$LMTP_DOVECOT does not exist"
    dovecot=yes
else
    unset LMTP_DOVECOT
    dovecot=no
fi
if pkg-config --exists lmtp 2>/dev/null; then
    die "pkg-config still finds lmtp"
fi
export HARNESS_OPTIONS=j2

tar -xzf "$tarball" -C "$work/unpack" || die "cannot unpack $tarball"
tops=$(ls -A "$work/unpack")
[ "$tops" = "$dist" ] || die "$tarball does not unpack into one $dist/ directory (it has: $tops)"
top=$work/unpack/$dist
prefix=$work/prefix
cd "$top"

log=$work/log
run() {    # run STEP COMMAND...: the output goes to $log.STEP, and to stderr on failure
    local step=$1
    shift
    if ! "$@" > "$log.$step" 2>&1; then
        tail -n 60 "$log.$step" >&2
        die "$step failed (the last lines of its output are above)"
    fi
}

start=$(date +%s)
run makefile-pl perl Makefile.PL INSTALL_BASE="$prefix"
grep -q '^Net::LMTP: liblmtp bundled' "$log.makefile-pl" \
    || { cat "$log.makefile-pl" >&2; die "Makefile.PL did not choose the bundled core"; }
[ -f Makefile ] || { cat "$log.makefile-pl" >&2; die "Makefile.PL wrote no Makefile"; }
run make make -j"$(nproc)"
run test make test TEST_VERBOSE=1
run install make install
[ ! -e "$work/cmake-used" ] || die "the build called cmake: $(cat "$work/cmake-used")"

# make test: what ran, what was skipped.
[ -x t/bin/fake-lmtp ] && [ -x t/bin/make-test-certs ] || die "make test did not build t/bin/fake-lmtp and t/bin/make-test-certs"
grep -q '^Result: PASS' "$log.test" || die "make test: no 'Result: PASS'"
summary=$(grep -E '^Files=[0-9]+, Tests=[0-9]+' "$log.test") || die "make test: no summary line"
files=$(sed -E 's/^Files=([0-9]+), .*/\1/' <<< "$summary")
tests=$(sed -E 's/^Files=[0-9]+, Tests=([0-9]+).*/\1/' <<< "$summary")
shipped=$(find t -maxdepth 1 -name "*.t" | wc -l)
[ "$files" -eq "$shipped" ] || die "make test ran $files test files, the tarball has $shipped"
# Skips, attributed to their test file: "t/x.t .. skipped: why", "1..0 # SKIP why", "ok N # skip why".
awk '/^t\/[^ ]+\.t \.+/ { file = $1 }
     /^t\/[^ ]+\.t \.+ skipped:/ { print file ": skipped wholesale: " substr($0, index($0, "skipped:") + 9); next }
     /^[[:space:]]*(ok [0-9]+ # [Ss][Kk][Ii][Pp]|1\.\.0 # [Ss][Kk][Ii][Pp])/ { sub(/^[[:space:]]+/, ""); print file ": " $0 }' \
    "$log.test" > "$work/skips"
wholesale=$(grep -c ': skipped wholesale: ' "$work/skips" || true)
if [ "$dovecot" = yes ]; then
    [ ! -s "$work/skips" ] || { cat "$work/skips" >&2; die "tests were skipped (above), with LMTP_DOVECOT set"; }
else
    if grep -v 'LMTP_DOVECOT' "$work/skips" >&2; then
        die "tests were skipped (above) for another reason than a missing Dovecot"
    fi
    [ "$wholesale" -le 1 ] || { cat "$work/skips" >&2; die "$wholesale test files were skipped wholesale"; }
fi
[ "$tests" -ge "$min_tests" ] || die "make test ran $tests tests, fewer than $min_tests"
skipped_subtests=$(grep -Ec ': ok [0-9]+ # [Ss][Kk][Ii][Pp]' "$work/skips" || true)

# The installed module: found under the prefix, bundled core, no rpath, one exported symbol.
so=$(find "$prefix" -path '*/auto/Net/LMTP/LMTP.so' -print -quit)
pm=$(find "$prefix" -path '*/Net/LMTP.pm' -print -quit)
[ -n "$so" ] && [ -n "$pm" ] || die "make install put no Net/LMTP.pm and auto/Net/LMTP/LMTP.so under $prefix"
if readelf -d "$so" | grep -E '\((RPATH|RUNPATH)\)' >&2; then
    die "the installed $so has an rpath (above)"
fi
if readelf -d "$so" | grep -E 'NEEDED.*liblmtp' >&2; then
    die "the installed $so needs a liblmtp shared library (above): the core is not bundled"
fi
exports=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVWiu]$/ { print $3 }' | sort | tr '\n' ' ')
[ "$exports" = "boot_Net__LMTP " ] || die "the installed $so exports more than boot_Net__LMTP: $exports"

# One delivery with the installed module, against the fake server the tarball built.
cat > "$work/smoke.pl" <<'PERL'
use strict;
use warnings;
use LMTPTest qw(start_fake);
use Net::LMTP;

my $prefix = shift;
my $pm = $INC{'Net/LMTP.pm'};
index($pm, "$prefix/") == 0 or die "Net::LMTP was loaded from $pm, not from $prefix\n";
open my $maps, '<', '/proc/self/maps' or die "/proc/self/maps: $!\n";
my ($so) = grep { m{/auto/Net/LMTP/LMTP\.so$} } map { chomp; (split ' ', $_, 6)[5] // '' } <$maps>;
defined $so && index($so, "$prefix/") == 0
    or die "LMTP.so was loaded from ", $so // 'nowhere', ", not from $prefix\n";

my $f = start_fake('--rules', 'nosuch@example.org=550');
my $l = Net::LMTP->new($f->host, $f->port, Hello => 'check.example', Timeout => 10)
    or die "Net::LMTP->new: $@\n";
my @r = $l->deliver('s@example.org', ['a@example.org', 'nosuch@example.org'], "Subject: check\n\nhello\n");
$l->quit or die "QUIT failed\n";
@r == 2 && $r[0]{status} eq 'ok' && $r[0]{code} == 250 && $r[1]{status} eq 'permfail' && $r[1]{code} == 550
    or die "unexpected results: ", join(', ', map { "$_->{address} $_->{status} $_->{code}" } @r), "\n";
my @m = $f->messages(1);
@m == 1 && $m[0] eq "Subject: check\r\n\r\nhello\r\n" or die "the fake server stored: @m\n";
$f->stop;
print "Net::LMTP $Net::LMTP::VERSION (liblmtp ", Net::LMTP::XS::library_version(),
      ") from $pm: a@ accepted (250), nosuch@ refused (550), message stored\n";
PERL
smoke=$(cd "$work" && LMTP_FAKE_SERVER="$top/t/bin/fake-lmtp" \
        perl -Mlib="$prefix/lib/perl5" -I"$top/t/lib" "$work/smoke.pl" "$prefix" 2>&1) \
    || { echo "$smoke" >&2; die "the installed module failed its delivery"; }
end=$(date +%s)

echo "check-cpan.sh: $(basename "$tarball"): built without cmake or a system liblmtp; make test: $files files," \
     "$tests tests passed, $wholesale file(s) and $skipped_subtests subtest(s) skipped (Dovecot: LMTP_DOVECOT $( [ "$dovecot" = yes ] && echo set || echo 'not set'))"
echo "check-cpan.sh: installed: $smoke"
echo "check-cpan.sh: $tarball passed in $((end - start)) s"
