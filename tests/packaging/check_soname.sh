#!/usr/bin/env bash
# soname: liblmtp's SONAME is liblmtp.so.<LMTP_VERSION_MAJOR>, the major
# version read from lmtp.h here (not from CMake), and the file names follow.
# Usage: check_soname.sh READELF LIBRARY HEADER
set -euo pipefail
readelf=$1 lib=$2 header=$3

major=$(sed -nE 's/^#define LMTP_VERSION_MAJOR[[:space:]]+([0-9]+)[[:space:]]*$/\1/p' "$header")
minor=$(sed -nE 's/^#define LMTP_VERSION_MINOR[[:space:]]+([0-9]+)[[:space:]]*$/\1/p' "$header")
patch=$(sed -nE 's/^#define LMTP_VERSION_PATCH[[:space:]]+([0-9]+)[[:space:]]*$/\1/p' "$header")
if [ -z "$major" ] || [ -z "$minor" ] || [ -z "$patch" ]; then
    echo "FAIL: cannot read LMTP_VERSION_MAJOR/MINOR/PATCH from $header" >&2
    exit 1
fi
expected="liblmtp.so.$major"

sonames=$("$readelf" -d "$lib" | sed -nE 's/.*\(SONAME\).*\[(.*)\].*/\1/p')
if [ "$sonames" != "$expected" ]; then
    echo "FAIL: SONAME of $lib is '${sonames:-<none>}', expected '$expected'" >&2
    exit 1
fi

# The real file is liblmtp.so.MAJOR.MINOR.PATCH; the soname link points to it.
dir=$(dirname "$lib")
real="liblmtp.so.$major.$minor.$patch"
if [ "$(basename "$(readlink -f "$lib")")" != "$real" ]; then
    echo "FAIL: $lib resolves to $(readlink -f "$lib"), expected $real" >&2
    exit 1
fi
if [ "$(readlink -f "$dir/$expected")" != "$(readlink -f "$lib")" ]; then
    echo "FAIL: $dir/$expected does not lead to $real" >&2
    exit 1
fi
echo "SONAME $expected, file $real"
