#!/usr/bin/env bash
# Installs what liblmtp needs to build, test and run its demo on Debian 12.
# Installs only what is missing; run as root (or it uses sudo when present).
#   packaging/setup.sh               the build, the tests, the demo
#   packaging/setup.sh --packaging   the same, and the tools packaging/build.sh uses
#                                    (Debian packages, the CPAN tarball, the Python sdist, the RPM spec)
set -euo pipefail

packages=(
    g++ make cmake pkg-config binutils       # the build
    libssl-dev                               # OpenSSL: STARTTLS, implicit TLS, SCRAM
    libgtest-dev libcmocka-dev               # unit tests (GoogleTest, CMocka)
    valgrind                                 # the C API tests run under it too
    libbenchmark-dev                         # the body encoder microbenchmark (bench/)
    clang-14 libclang-rt-14-dev              # libFuzzer targets
    python3                                  # test helpers
    perl libtest-leaktrace-perl              # the Net::LMTP Perl module and its tests
    libtest-pod-perl libtest-pod-coverage-perl #  and its POD tests
    libnet-server-mail-perl                  # Net::Server::Mail::LMTP: a second real LMTP server for tests
    python3-dev pybind11-dev python3-pybind11 # the lmtp Python package (for /usr/bin/python3)
    python3-pytest python3-setuptools python3-pip python3-venv  # its tests and pip install
    python3-uvloop                           # lmtp.AsyncLMTP's tests run on uvloop's loop too
    dovecot-core dovecot-lmtpd openssl       # a real LMTP server for integration tests and the demo
)
case "${1:-}" in
    --packaging)
        packages+=(
            build-essential fakeroot dpkg-dev debhelper dh-python equivs   # Debian packages
            lintian devscripts autopkgtest                                 #  and their checks
            git python3-all-dev python3-build python3-wheel twine check-manifest # the Python sdist,
            python3-setuptools-whl python3-wheel-whl                       #  and its offline isolated install
            rpm rpmlint                                                    # the RPM spec's checks
        ) ;;
    "") ;;
    *) echo "usage: packaging/setup.sh [--packaging]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
    # (no `| grep -q` under pipefail: grep leaving early would fail the pipeline)
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Installing dovecot must not start a system-wide daemon: we run our own.
policy_added=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_added=yes
fi
trap '[ -n "$policy_added" ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
