#!/usr/bin/env bash
# The benchmark in one command (see bench/README.md). On Debian 12 as root:
# installs what is missing (apt-get; nodemailer with npm into bench/node_modules),
# builds liblmtp, its Perl and Python faces and the kit in build/bench with
# CMake (Release), then runs bench/run.py: every scenario, every client, the
# table of medians into bench/results/ (results.md, results.json, results.png).
#   bench/run.sh                 the full run (7 runs per client, about 5 minutes here)
#   bench/run.sh --quick         tiny sizes, 1 run, results in a temporary directory
#   bench/run.sh --runs 3 --only a,d     any other run.py option
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build/bench

# ---- packages -------------------------------------------------------------------------
packages=(g++ make cmake pkg-config libssl-dev perl python3 python3-dev pybind11-dev
          libbenchmark-dev gnuplot-nox)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}" ||
        { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

# nodemailer, into bench/node_modules (never committed). nodemailer 10 needs node 20.
if [ ! -e bench/node_modules/nodemailer/package.json ]; then
    echo "run.sh: npm install nodemailer into bench/node_modules"
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$node_major" -ge 20 ]; then
        (cd bench && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
    else
        (cd bench && npm install --no-save --no-audit --no-fund --no-package-lock --loglevel=error nodemailer@6)
    fi
fi

# ---- build ------------------------------------------------------------------------------
echo "run.sh: building in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target lmtp lmtp_core perl_module python_package bench_kit >/dev/null
bin=$build/bench

# ---- run ---------------------------------------------------------------------------------
exec /usr/bin/python3 "$root/bench/run.py" --build-dir "$build" --bin-dir "$bin" "$@"
