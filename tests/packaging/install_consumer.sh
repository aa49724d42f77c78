#!/usr/bin/env bash
# install_consumer: install the build into a temporary prefix, check what was
# installed, then build and run a consumer against it twice: through the CMake
# package (find_package(lmtp 1) + lmtp::lmtp) and through pkg-config alone.
# Usage: install_consumer.sh CMAKE GENERATOR MAKE_PROGRAM BUILD_DIR CONFIG CONSUMER_DIR
#                            C_COMPILER PKG_CONFIG LIBDIR INCLUDEDIR VERSION [CFLAGS]
# CFLAGS: compiler and linker flags the consumer needs too (the sanitizers of
# an LMTP_SANITIZE build: its runtime must come first in the program).
set -euo pipefail
cmake=$1 generator=$2 make_program=$3 build=$4 config=$5 consumer=$6
cc=$7 pkg_config=$8 libdir=$9 includedir=${10} version=${11} cflags=${12:-}

case $libdir$includedir in
    /*)
        echo "CMAKE_INSTALL_LIBDIR or CMAKE_INSTALL_INCLUDEDIR is absolute: no temporary prefix to test"
        exit 77 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
run() {
    echo "+ $*"
    "$@"
}

# ---- install ------------------------------------------------------------------
run "$cmake" --install "$build" --config "$config" --prefix "$prefix"
echo "installed:"
(cd "$prefix" && find . \( -type f -o -type l \) | sort | sed 's/^/  /')

# The C API only: one header, no core headers, no static library.
[ -f "$prefix/$includedir/lmtp.h" ] || fail "no $includedir/lmtp.h"
headers=$(cd "$prefix/$includedir" && find . \( -type f -o -type l \) | sort)
[ "$headers" = "./lmtp.h" ] || fail "headers other than lmtp.h installed: $(echo $headers)"
statics=$(find "$prefix" -name '*.a')
[ -z "$statics" ] || fail "static libraries installed: $statics"
cores=$(find "$prefix" -iname '*core*')
[ -z "$cores" ] || fail "core files installed: $cores"

# liblmtp.so -> liblmtp.so.1 -> liblmtp.so.$version
lib=$prefix/$libdir
major=${version%%.*}
[ -f "$lib/liblmtp.so.$version" ] && [ ! -L "$lib/liblmtp.so.$version" ] ||
    fail "no regular file $libdir/liblmtp.so.$version"
[ "$(readlink "$lib/liblmtp.so.$major")" = "liblmtp.so.$version" ] ||
    fail "$libdir/liblmtp.so.$major is not a link to liblmtp.so.$version"
[ "$(readlink "$lib/liblmtp.so")" = "liblmtp.so.$major" ] ||
    fail "$libdir/liblmtp.so is not a link to liblmtp.so.$major"

# lmtp-send and its man page; the installed program uses the installed library.
send=$prefix/bin/lmtp-send
[ -x "$send" ] || fail "no bin/lmtp-send"
[ -f "$prefix/share/man/man1/lmtp-send.1" ] || fail "no share/man/man1/lmtp-send.1"
said=$("$send" --version 2>&1) || fail "installed lmtp-send --version failed: $said"
[[ "$said" == *"(liblmtp $version)"* ]] || fail "installed lmtp-send --version: $said"
loaded=$(ldd "$send" | awk '$1 == "liblmtp.so.'"$major"'" { print $3 }')
[ -n "$loaded" ] && [ "$(realpath "$loaded")" = "$(realpath "$lib/liblmtp.so.$major")" ] ||
    fail "installed lmtp-send does not load $libdir/liblmtp.so.$major: $(ldd "$send")"

# ---- consumer through the CMake package -----------------------------------------------
generator_args=(-G "$generator")
[ -n "$make_program" ] && generator_args+=("-DCMAKE_MAKE_PROGRAM=$make_program")
run "$cmake" -S "$consumer" -B "$tmp/build-cmake" "${generator_args[@]}" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags"
found=$(sed -n 's/^lmtp_DIR:PATH=//p' "$tmp/build-cmake/CMakeCache.txt")
[ "$found" = "$prefix/$libdir/cmake/lmtp" ] ||
    fail "find_package(lmtp) used '$found', not the temporary prefix"
run "$cmake" --build "$tmp/build-cmake"

check_app() { # $1: the program
    local out linked
    linked=$(LD_LIBRARY_PATH="$lib" ldd "$1" | grep 'liblmtp\.so' || true)
    case $linked in
        *"$lib/liblmtp.so.$major"*) ;;
        *) fail "$1 does not load the installed liblmtp: $linked" ;;
    esac
    out=$(LD_LIBRARY_PATH="$lib" "$1") || fail "$1 failed: $out"
    echo "$out"
    grep -qx "version $version" <<<"$out" || fail "$1 did not print 'version $version'"
    grep -qE '^strerror .+' <<<"$out" || fail "$1 did not print a strerror sentence"
}
check_app "$tmp/build-cmake/app"

# The package's version file: SameMajorVersion. A newer minor or another
# major must not be found.
mkdir -p "$tmp/version-check"
cat >"$tmp/version-check/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(lmtp_version_check LANGUAGES C)
find_package(lmtp ${WANT} QUIET)
if(lmtp_FOUND)
  message(STATUS "lmtp ${WANT}: found ${lmtp_VERSION}")
else()
  message(STATUS "lmtp ${WANT}: not found")
endif()
CMAKE
version_found() { # $1: version asked for; prints "found X" or "not found"
    "$cmake" -S "$tmp/version-check" -B "$tmp/version-check/build-$1" "${generator_args[@]}" \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DWANT="$1" |
        sed -n "s/^-- lmtp $1: //p"
}
[ "$(version_found "$major.0")" = "found $version" ] || fail "find_package(lmtp $major.0) failed"
[ "$(version_found "$((major + 1))")" = "not found" ] ||
    fail "find_package(lmtp $((major + 1))) accepted version $version"
if [ "$major" -gt 0 ]; then
    [ "$(version_found "$((major - 1))")" = "not found" ] ||
        fail "find_package(lmtp $((major - 1))) accepted version $version"
fi
echo "find_package version checks passed"

# ---- consumer through pkg-config -------------------------------------------------------
export PKG_CONFIG_PATH="$lib/pkgconfig"
unset PKG_CONFIG_SYSROOT_DIR
[ "$("$pkg_config" --modversion lmtp)" = "$version" ] || fail "pkg-config --modversion lmtp"
[ "$("$pkg_config" --variable=prefix lmtp)" = "$prefix" ] || fail "lmtp.pc prefix is not $prefix"
[ "$("$pkg_config" --variable=libdir lmtp)" = "$lib" ] || fail "lmtp.pc libdir is not $lib"
[ "$("$pkg_config" --variable=includedir lmtp)" = "$prefix/$includedir" ] ||
    fail "lmtp.pc includedir is not $prefix/$includedir"
flags=$("$pkg_config" --cflags --libs lmtp)
echo "pkg-config --cflags --libs lmtp: $flags"
# shellcheck disable=SC2086 # the flags are words
run "$cc" -std=c99 -Wall -Wextra -pedantic -Werror $cflags "$consumer/main.c" $flags -o "$tmp/app-pc"
check_app "$tmp/app-pc"

# ---- the build tree itself through pkg-config ----------------------------------------
# Installing left no lmtp.pc in the build tree (one would point at the prefix above, gone
# when this test ends); lmtp-uninstalled.pc describes the build tree and works.
[ ! -e "$build/packaging/lmtp.pc" ] || fail "the build tree keeps an lmtp.pc: $build/packaging/lmtp.pc"
[ -f "$build/packaging/lmtp-uninstalled.pc" ] || fail "no $build/packaging/lmtp-uninstalled.pc"
export PKG_CONFIG_PATH="$build/packaging"
flags=$("$pkg_config" --cflags --libs lmtp)
echo "pkg-config --cflags --libs lmtp (build tree): $flags"
# shellcheck disable=SC2086 # the flags are words
run "$cc" -std=c99 -Wall -Wextra -pedantic -Werror $cflags "$consumer/main.c" $flags -o "$tmp/app-uninstalled"
libdir_build=$("$pkg_config" --variable=libdir lmtp)
[ "$(realpath "$libdir_build")" = "$(realpath "$build/capi")" ] ||
    fail "lmtp-uninstalled.pc libdir is $libdir_build, not the build tree's capi/"
out=$(LD_LIBRARY_PATH="$libdir_build" "$tmp/app-uninstalled") || fail "app against the build tree failed: $out"
grep -qx "version $version" <<<"$out" || fail "app against the build tree did not print 'version $version'"
ldd_out=$(LD_LIBRARY_PATH="$libdir_build" ldd "$tmp/app-uninstalled")
[[ "$ldd_out" == *"$libdir_build/liblmtp.so.$major"* ]] || fail "app does not load the build tree's library: $ldd_out"

echo "install_consumer: CMake package, pkg-config and the build tree's pkg-config file all work"
