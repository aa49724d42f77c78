#!/usr/bin/env bash
# perl_install: the Perl distribution against an INSTALLED liblmtp.
#   1. install liblmtp into a temporary prefix;
#   2. perl Makefile.PL && make && make test, liblmtp found through pkg-config only;
#   3. make install (into a DESTDIR) puts Net/LMTP.pm and LMTP.so under perl's own
#      site directories, where `perl -MNet::LMTP` finds them.
# Usage: perl_install.sh CMAKE BUILD_DIR PERL_SOURCE_DIR PERL MAKE
# The environment of the Perl tests (LMTP_FAKE_SERVER, LMTP_DOVECOT, ...) is passed through.
set -euo pipefail
cmake=$1 build=$2 src=$3 perl=$4 make=$5
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-perl-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$cmake" --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
pcdir=$(dirname "$(find "$tmp/prefix" -name lmtp.pc | head -1)")
[ -f "$pcdir/lmtp.pc" ] || fail "no lmtp.pc installed"

cp -R "$src" "$tmp/dist"
cd "$tmp/dist"
unset LMTP_BUILD_DIR
PKG_CONFIG_PATH=$pcdir "$perl" Makefile.PL
grep -q -- "-L$tmp/prefix" Makefile || fail "Makefile.PL did not take liblmtp from pkg-config"
"$make" > make.log 2>&1 || { cat make.log; fail "make"; }
# The module must load the installed library, not the build tree's.
# (ldd's output taken whole: `ldd | grep -q` fails under pipefail when grep stops reading early)
libs=$(ldd blib/arch/auto/Net/LMTP/LMTP.so)
grep -q "$tmp/prefix/.*liblmtp.so" <<<"$libs" ||
    fail "LMTP.so does not use the installed liblmtp: $(grep lmtp <<<"$libs")"
"$make" test

"$make" install DESTDIR="$tmp/root" > install.log
sitelib=$("$perl" -MConfig -e 'print $Config{installsitelib}')
sitearch=$("$perl" -MConfig -e 'print $Config{installsitearch}')
# With compiled code in blib/arch, MakeMaker puts the .pm in the arch directory too.
[ -f "$tmp/root$sitearch/Net/LMTP.pm" ] || [ -f "$tmp/root$sitelib/Net/LMTP.pm" ] ||
    fail "Net/LMTP.pm is in neither $sitearch nor $sitelib"
[ -f "$tmp/root$sitearch/auto/Net/LMTP/LMTP.so" ] || fail "LMTP.so is not in $sitearch"
# Those are perl's own search directories...
"$perl" -e 'my %inc = map { $_ => 1 } @INC; exit !($inc{$ARGV[0]} && $inc{$ARGV[1]})' "$sitelib" "$sitearch" ||
    fail "$sitelib and $sitearch are not in perl's @INC"
# ...and from there it loads and works.
"$perl" -I"$tmp/root$sitearch" -I"$tmp/root$sitelib" -MNet::LMTP \
    -e 'print "Net::LMTP $Net::LMTP::VERSION from $INC{q(Net/LMTP.pm)} over liblmtp ", Net::LMTP::XS::library_version(), "\n"'
echo "perl_install: built, tested and installed against the installed liblmtp"
