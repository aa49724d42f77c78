#!/usr/bin/env bash
# versions_agree: one version everywhere. The version is LMTP_VERSION_MAJOR/MINOR/PATCH of
# capi/include/lmtp.h; every other place that states it must agree:
#   bindings/perl/lib/Net/LMTP.pm   $VERSION, equal to vMAJOR.MINOR.PATCH as version.pm compares
#                                   (1.1.0 is '1.001', 1.2.3 is '1.002003')
#   bindings/python                 the version setup.py gives the package
#   packaging/debian/changelog      the newest entry's upstream version (before the last '-')
#   packaging/rpm/liblmtp.spec      Version:
# Usage: check_versions.sh SOURCE_DIR PYTHON
#        check_versions.sh --self-test SOURCE_DIR PYTHON  (a copy with each place changed in
#                                                          turn must fail)
set -euo pipefail

check() { # $1: source dir, $2: python; prints what it found, exits 1 on a disagreement
    local root=$1 python=$2 v perl py deb rpm bad=0
    local header=$root/capi/include/lmtp.h
    v=$(for part in MAJOR MINOR PATCH; do
            sed -n "s/^#define LMTP_VERSION_$part  *\([0-9][0-9]*\)\$/\1/p" "$header"
        done | paste -sd.)
    [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "no MAJOR.MINOR.PATCH in $header (got '$v')"; return 1; }
    echo "lmtp.h: $v"

    perl=$(perl -ne 'if (/^\s*our\s+\$VERSION\s*=\s*([\x27"])([^\x27"]+)\1/) { print $2; exit }' \
        "$root/bindings/perl/lib/Net/LMTP.pm")
    echo "Net::LMTP \$VERSION: ${perl:-(none)}"
    if [ -z "$perl" ] || ! perl -Mversion -e 'exit(version->parse($ARGV[0]) == version->parse("v$ARGV[1]") ? 0 : 1)' \
        "$perl" "$v"; then
        echo "  disagrees: Net::LMTP's \$VERSION must equal v$v"; bad=1
    fi

    py=$(cd "$root/bindings/python" && "$python" setup.py --version 2>/dev/null | tail -n1)
    echo "lmtp (Python): ${py:-(none)}"
    [ "$py" = "$v" ] || { echo "  disagrees: the Python package's version must be $v"; bad=1; }

    deb=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$root/packaging/debian/changelog" 2>/dev/null || true)
    deb=${deb#*:}        # an epoch is not part of the upstream version
    echo "debian/changelog: ${deb:-(none)}"
    [ "${deb%-*}" = "$v" ] || { echo "  disagrees: debian/changelog's newest entry must be $v-<revision>"; bad=1; }

    rpm=$( { sed -n "s/^Version:[[:space:]]*//p" "$root/packaging/rpm/liblmtp.spec" 2>/dev/null || true; } | head -n1)
    echo "liblmtp.spec: ${rpm:-(none)}"
    [ "$rpm" = "$v" ] || { echo "  disagrees: the spec's Version must be $v"; bad=1; }
    return $bad
}

if [ "${1:-}" = --self-test ]; then
    root=$2 python=$3
    check "$root" "$python" >/dev/null || { echo "FAIL: the tree itself does not agree"; check "$root" "$python"; exit 1; }
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-versions.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # Each place changed in turn (a copy of what the check reads) must be caught.
    mutate() { # $1: label, $2: file (relative), $3: perl substitution
        rm -rf "$tmp/t"
        mkdir -p "$tmp/t"
        (cd "$root" && tar --exclude=__pycache__ --exclude=tests -cf - capi/include/lmtp.h \
            bindings/perl/lib/Net/LMTP.pm bindings/python packaging/debian/changelog \
            packaging/rpm/liblmtp.spec) | tar -C "$tmp/t" -xf -
        perl -0pi -e "$3" "$tmp/t/$2"
        if cmp -s "$root/$2" "$tmp/t/$2"; then echo "FAIL: the $1 change did not apply"; exit 1; fi
        if check "$tmp/t" "$python" >"$tmp/out"; then
            echo "FAIL: a changed $1 was not caught:"; cat "$tmp/out"; exit 1
        fi
        echo "caught: $1 ($(grep -c disagrees "$tmp/out") disagreement(s))"
    }
    mutate "lmtp.h version" capi/include/lmtp.h 's/(#define LMTP_VERSION_PATCH )(\d+)/$1.($2+1)/e'
    mutate "Perl \$VERSION" bindings/perl/lib/Net/LMTP.pm 's/(our \$VERSION = \x27)[^\x27]+/${1}9.99/'
    mutate "Debian changelog" packaging/debian/changelog 's/^(\S+ \()[^)-]+/${1}9.9.9/'
    mutate "RPM Version" packaging/rpm/liblmtp.spec 's/^(Version:\s*)\S+/${1}9.9.9/m'
    echo "versions_agree self-test: every place is checked"
    exit 0
fi

[ $# -eq 2 ] || { echo "usage: check_versions.sh [--self-test] SOURCE_DIR PYTHON" >&2; exit 2; }
check "$1" "$2"
echo "versions agree"
