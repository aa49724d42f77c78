#!/usr/bin/env bash
# Sets up everything and runs every test: a -Werror build with all tests
# (unit, C API, packaging, real Dovecot and Net::Server::Mail::LMTP), then the
# same tests built with AddressSanitizer and UndefinedBehaviorSanitizer, the
# fuzzers, and last the Debian, CPAN and Python packages, built and tested as
# installed (packaging/README.md). Every ctest and package check runs under
# tests/support/no-leftovers: a process a test started and left running (a
# server not stopped) fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/setup.sh
jobs=$(nproc)
no_leftovers=$PWD/tests/support/no-leftovers

cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMTP_WERROR=ON
cmake --build build/release -j"$jobs"
(cd build/release && "$no_leftovers" ctest --output-on-failure -j"$jobs")

# Everything again with AddressSanitizer (leaks included) and UBSan, but the packaging checks
# (install layouts, tarballs, versions: nothing a sanitizer looks at, and the packages are
# checked once more below) and the benchmark's smoke run.
cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DLMTP_WERROR=ON -DLMTP_SANITIZE=ON
cmake --build build/sanitize -j"$jobs"
(cd build/sanitize && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$no_leftovers" ctest --output-on-failure -j"$jobs" -LE '^(packaging|bench)$')
# Fuzzers: a short run of each libFuzzer target over its seed corpus.
cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DLMTP_FUZZ=ON -DLMTP_WERROR=ON \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
cmake --build build/fuzz -j"$jobs" --target fuzz_reply fuzz_body fuzz_caps fuzz_session
(cd build/fuzz && "$no_leftovers" ctest --output-on-failure -L fuzz)

# The packages, made from a clean copy of the tree and checked as installed: the five .debs
# (lintian; the suites run against the installed packages, not during the build), the CPAN
# tarball (distcheck, disttest; then alone, with no CMake and no liblmtp), the Python sdist
# (twine, check-manifest; then a wheel from it in a fresh venv), and the RPM spec. The fake
# server of build/release serves the checkout's suites.
packages=$PWD/build/packages
rm -rf "$packages"
# (disttest is left out of the CPAN build: check-cpan.sh builds and tests the tarball alone below.)
DEB_BUILD_OPTIONS="nocheck parallel=$jobs" LMTP_CPAN_DISTTEST=0 packaging/build.sh all "$packages"
export LMTP_DOVECOT=$PWD/tests/support/dovecot.sh
"$no_leftovers" packaging/check-deb.sh "$packages" "$PWD/build/release"
"$no_leftovers" packaging/check-cpan.sh "$packages"
"$no_leftovers" packaging/check-sdist.sh "$packages" "$PWD/build/release"
echo "test.sh: all tests passed"
