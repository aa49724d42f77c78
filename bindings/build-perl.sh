#!/usr/bin/env bash
# Builds the Net::LMTP distribution out of the source tree, against a liblmtp build tree.
#   build-perl.sh SOURCE_DIR BUILD_DIR LMTP_BUILD_DIR [PERL] [MAKE]
set -euo pipefail
src=$1 dst=$2 lmtp_build=$3 perl=${4:-perl} make=${5:-make}
rm -rf "$dst"
mkdir -p "$dst"
cp -R "$src"/. "$dst"/
cd "$dst"
"$perl" Makefile.PL --lmtp-build="$lmtp_build" > makefile-pl.log
"$make" > make.log 2>&1 || { cat make.log >&2; exit 1; }
