#!/usr/bin/env bash
# header_c99: lmtp.h compiles as strict C99 and as C++, warnings as errors.
# Usage: check_header.sh C_COMPILER CXX_COMPILER INCLUDE_DIR SOURCE
set -euo pipefail
cc=$1 cxx=$2 incdir=$3 src=$4

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() {
    echo "+ $*"
    "$@"
}

run "$cc" -std=c99 -Wall -Wextra -pedantic -Werror -Wstrict-prototypes -Wmissing-prototypes \
    -Wshadow -Wconversion -Wundef -I"$incdir" -c "$src" -o "$tmp/c99.o"
# GNU extensions off and on must both work.
run "$cc" -std=gnu99 -Wall -Wextra -pedantic -Werror -I"$incdir" -c "$src" -o "$tmp/gnu99.o"
run "$cxx" -x c++ -std=c++11 -Wall -Wextra -pedantic -Werror -Wshadow -Wconversion -Wundef \
    -Wold-style-cast -I"$incdir" -c "$src" -o "$tmp/cxx.o"
echo "lmtp.h compiles as C99 and as C++"
