#!/usr/bin/env bash
# Checks the Debian packages built by packaging/build-deb.sh as installed:
# installs the five .debs (apt-get install ./...), runs the checkout's Perl and
# Python test suites against the installed Net::LMTP and lmtp package (and
# proves that every test process loaded them from /usr), and runs the
# packages' autopkgtest scripts (debian/tests: a C program through pkg-config
# and the CMake package, Perl, Python and lmtp-send, each delivering to a
# throwaway Dovecot). At the end, also on failure, it purges the packages it
# installed (ours and the dependencies apt pulled in).
#
#   packaging/check-deb.sh OUTDIR BUILD
#
# OUTDIR  where build-deb.sh put the packages: the .changes of the version in
#         capi/include/lmtp.h and the five .debs it lists
# BUILD   a CMake build tree of this checkout, for the fake LMTP server
#         (BUILD/tests/support/fake-lmtp and make-test-certs)
#
# Environment: CHECK_DEB_AUTOPKGTEST=1 also runs the autopkgtest runner
# (`autopkgtest OUTDIR/<changes> -- null`, on this machine; it needs the
# source package, .dsc, in the .changes; about two more minutes).
# Needs root (or sudo) to install and purge. Refuses to run when one of the
# five packages is already installed: it would not know what to restore.
set -euo pipefail

die() { echo "check-deb.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
[ -d "$1" ] || die "OUTDIR $1 is not a directory"
[ -d "$2" ] || die "BUILD $2 is not a directory"
outdir=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
fake=$build/tests/support/fake-lmtp
[ -x "$fake" ] || die "no $fake: build the checkout first (cmake --build $build)"
[ -x "$build/tests/support/make-test-certs" ] || die "no make-test-certs next to $fake"
for tool in dpkg-query dcmd apt-get prove; do
    command -v "$tool" >/dev/null || die "$tool not found: run packaging/setup.sh --packaging"
done
[ -x /usr/bin/python3 ] || die "no /usr/bin/python3"
/usr/bin/python3 -c 'import pytest' 2>/dev/null || die "no pytest for /usr/bin/python3 (apt-get install python3-pytest)"

sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to install the packages"
    sudo=sudo
fi

# --- the packages: the .changes of lmtp.h's version ------------------------------
version=$(sed -n 's/^#define LMTP_VERSION_\(MAJOR\|MINOR\|PATCH\) \+\([0-9]\+\).*/\2/p' \
          "$root/capi/include/lmtp.h" | paste -sd.)
arch=$(dpkg --print-architecture)
shopt -s nullglob
changes=("$outdir"/liblmtp_"$version"-*_"$arch".changes)
shopt -u nullglob
[ ${#changes[@]} -eq 1 ] ||
    die "expected one liblmtp_$version-*_$arch.changes in $outdir, found ${#changes[@]} (run packaging/build.sh deb $outdir)"
changes=${changes[0]}
packages=(liblmtp1 liblmtp-dev lmtp-send libnet-lmtp-perl python3-lmtp)
debs=()
for p in "${packages[@]}"; do
    deb=$(dcmd --deb "$changes" | grep "/${p}_[^/]*\.deb$" || true)
    [ -n "$deb" ] && [ -f "$deb" ] || die "$(basename "$changes") lists no ${p}_*.deb present in $outdir"
    debs+=("$deb")
done

for p in "${packages[@]}"; do
    if dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
        die "$p is already installed: remove it first (apt-get purge ${packages[*]})"
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-deb.XXXXXX")
installed_before=$tmp/installed-before
dpkg-query -W -f '${db:Status-Status} ${binary:Package}\n' | awk '$1 == "installed" {print $2}' |
    sort > "$installed_before"

cleanup() {
    local rc=$? new
    set +e
    # Everything installed since: the five, and what apt pulled in for them.
    new=$(dpkg-query -W -f '${db:Status-Status} ${binary:Package}\n' |
          awk '$1 == "installed" || $1 == "unpacked" || $1 == "half-configured" {print $2}' | sort |
          comm -13 "$installed_before" -)
    if [ -n "$new" ]; then
        echo "check-deb.sh: purging $(echo $new)"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $sudo apt-get purge -y -q $new > "$tmp/purge.log" 2>&1 ||
            { cat "$tmp/purge.log" >&2; echo "check-deb.sh: purging failed" >&2; rc=1; }
    fi
    for p in "${packages[@]}"; do
        if dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null | grep -qvx not-installed; then
            echo "check-deb.sh: $p is still on the system" >&2
            rc=1
        fi
    done
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
step() { echo "check-deb.sh: [$((SECONDS - start)) s] $*"; }

# --- install ------------------------------------------------------------------
step "apt-get install ${debs[*]##*/}"
if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${debs[@]}" \
        > "$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    die "apt-get install failed"
fi
for p in "${packages[@]}"; do
    v=$(dpkg-query -W -f '${Version}' "$p")
    [ "${v%-*}" = "$version" ] || die "$p $v is installed, expected $version-*"
done

export LMTP_FAKE_SERVER=$fake
export LMTP_DOVECOT=$root/tests/support/dovecot.sh
export LMTP_NSM_SERVER=$root/tests/support/nsm-lmtp.pl
export LMTP_TEST_STRICT=1

# --- Perl: the checkout's t/ against the installed Net::LMTP -------------------
# No blib, no -l: Net::LMTP can only come from perl's @INC. A module loaded into
# every perl (PERL5OPT) records, when the process ends, where Net::LMTP came from.
mkdir -p "$tmp/perl"
cat > "$tmp/perl/LMTPOrigin.pm" <<'PERL'
package LMTPOrigin;
END {
    my $f = $INC{'Net/LMTP.pm'};
    if (defined $f && open my $fh, '>>', $ENV{LMTP_ORIGIN_LOG}) { print $fh "$0 $f\n"; close $fh }
}
1;
PERL
step "Perl: prove bindings/perl/t against the installed Net::LMTP"
perl_tests=$(cd "$root/bindings/perl" && ls t/*.t | grep -v '^t/pod\.t$')
# shellcheck disable=SC2086
if ! (cd "$root/bindings/perl" &&
      LMTP_ORIGIN_LOG=$tmp/perl-origins PERL5OPT="-I$tmp/perl -MLMTPOrigin" HARNESS_OPTIONS=j2 \
      prove $perl_tests) > "$tmp/prove.log" 2>&1; then
    cat "$tmp/prove.log" >&2
    die "the Perl suite failed against the installed Net::LMTP"
fi
tail -n 2 "$tmp/prove.log"
grep -E '^t/.*skipped' "$tmp/prove.log" && die "a Perl test file was skipped"
[ -s "$tmp/perl-origins" ] || die "no Perl test loaded Net::LMTP"
if grep -v ' /usr/lib/[^ ]*/perl5/[^ ]*/Net/LMTP\.pm$' "$tmp/perl-origins" >&2; then
    die "the test processes above loaded Net::LMTP from outside /usr/lib/<triplet>/perl5"
fi
echo "check-deb.sh: $(sort -u -k2 "$tmp/perl-origins" | awk '{print $2}' | sort -u) loaded by $(wc -l < "$tmp/perl-origins") perl processes"

# --- Python: the checkout's tests against the installed lmtp ---------------------
# From a directory where the checkout's lmtp package cannot be imported; a
# plugin asserts that the lmtp the tests use is the installed one.
mkdir -p "$tmp/py/plugin" "$tmp/py/cwd"
cat > "$tmp/py/plugin/lmtp_origin.py" <<'PY'
import sys

WHERE = "/usr/lib/python3/dist-packages/lmtp/"


def pytest_sessionfinish(session, exitstatus):
    mods = {name: getattr(sys.modules.get(name), "__file__", None) for name in ("lmtp", "lmtp._lmtp")}
    ok = all(f and f.startswith(WHERE) for f in mods.values())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line("lmtp loaded from: %s%s" % (mods, "" if ok else " (not %s)" % WHERE))
    if not ok:
        session.exitstatus = 1
PY
step "Python: pytest bindings/python/tests against the installed lmtp"
if ! (cd "$tmp/py/cwd" && PYTHONPATH=$tmp/py/plugin PYTHONDONTWRITEBYTECODE=1 \
      /usr/bin/python3 -m pytest -p lmtp_origin -p no:cacheprovider -q -ra \
      "$root/bindings/python/tests") > "$tmp/pytest.log" 2>&1; then
    cat "$tmp/pytest.log" >&2
    die "the Python suite failed against the installed lmtp"
fi
grep -oE 'lmtp loaded from: .*' "$tmp/pytest.log" || die "the Python suite did not say where lmtp came from"
tail -n 1 "$tmp/pytest.log"
grep -E '^SKIPPED' "$tmp/pytest.log" && die "Python tests were skipped"

# --- the autopkgtest scripts: C, Perl, Python, lmtp-send against Dovecot ---------
# They run from a source tree (debian/tests/..., tests/support/dovecot.sh):
# this checkout's, seen through links, so that nothing is written into it.
mkdir -p "$tmp/src" "$tmp/autopkgtest"
ln -s "$root/packaging/debian" "$tmp/src/debian"
ln -s "$root/tests" "$tmp/src/tests"
tests=$(sed -n 's/^Tests: *//p' "$root/packaging/debian/tests/control")
for t in $tests; do
    step "autopkgtest script $t"
    mkdir -p "$tmp/autopkgtest/$t"
    if ! (cd "$tmp/src" && AUTOPKGTEST_TMP=$tmp/autopkgtest/$t "debian/tests/$t") \
            > "$tmp/autopkgtest/$t.log" 2> "$tmp/autopkgtest/$t.err"; then
        cat "$tmp/autopkgtest/$t.log" "$tmp/autopkgtest/$t.err" >&2
        die "debian/tests/$t failed"
    fi
    if [ -s "$tmp/autopkgtest/$t.err" ]; then
        cat "$tmp/autopkgtest/$t.err" >&2
        die "debian/tests/$t wrote to stderr (autopkgtest fails such a test)"
    fi
    grep '^ok: ' "$tmp/autopkgtest/$t.log"
done

# --- optionally, the autopkgtest runner itself ------------------------------------
if [ "${CHECK_DEB_AUTOPKGTEST:-0}" = 1 ]; then
    command -v autopkgtest >/dev/null || die "autopkgtest not found (apt-get install autopkgtest)"
    dcmd --dsc "$changes" | grep -q . || die "$(basename "$changes") has no .dsc: autopkgtest needs the source"
    step "autopkgtest $(basename "$changes") -- null"
    if ! $sudo autopkgtest -o "$tmp/autopkgtest-out" "$changes" -- null > "$tmp/autopkgtest.log" 2>&1; then
        tail -n 40 "$tmp/autopkgtest.log" >&2
        die "autopkgtest failed"
    fi
    cat "$tmp/autopkgtest-out/summary"
fi

step "all passed; purging"
echo "check-deb.sh: checked the installed ${packages[*]} ($version)"
