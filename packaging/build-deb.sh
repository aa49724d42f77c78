#!/usr/bin/env bash
# Builds liblmtp's Debian packages (source liblmtp; binaries liblmtp1,
# liblmtp-dev, lmtp-send, libnet-lmtp-perl, python3-lmtp) from a clean copy of
# the tree, and checks them with lintian.
#
#   packaging/build-deb.sh SRC OUTDIR
#
# SRC     a clean copy of the source tree (packaging/build.sh makes one); it is
#         read, not changed: the build runs in a temporary copy of it
# OUTDIR  where the results go (created): the five .debs, the .changes and
#         .buildinfo, the source package (.dsc, .orig.tar.xz, .debian.tar.xz),
#         and the build log (.build)
#
# Steps: checks that debian/changelog carries the version of lmtp.h; installs
# the missing Build-Depends (apt-get build-dep, as root or through sudo); makes
# liblmtp_<version>.orig.tar.xz from SRC; copies packaging/debian to debian/;
# dpkg-buildpackage -us -uc (source and binaries); lintian --fail-on
# error,warning on the .changes. Exits non-zero if any step fails.
#
# dpkg-buildpackage runs with PATH=/usr/sbin:/usr/bin:/sbin:/bin (Debian's
# tools only, as in a build chroot).
# Environment: DEB_BUILD_OPTIONS is honoured (nocheck skips the tests run
# during the build); parallel=$(nproc) and noautodbgsym (no -dbgsym packages)
# are added unless it already says parallel=N or autodbgsym. BUILD_DEB_KEEP=1
# keeps the temporary build directory (its path is printed) for inspection.
set -euo pipefail

die() { echo "build-deb.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
src=$1 outdir=$2
[ -d "$src" ] || die "SRC $src is not a directory"
src=$(cd "$src" && pwd)
[ -f "$src/capi/include/lmtp.h" ] || die "SRC $src has no capi/include/lmtp.h: not a liblmtp tree"
[ -f "$src/packaging/debian/control" ] || die "SRC $src has no packaging/debian/control"
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

for tool in dpkg-buildpackage dpkg-parsechangelog lintian dcmd tar xz; do
    command -v "$tool" >/dev/null ||
        die "$tool not found: run packaging/setup.sh --packaging (dpkg-dev, lintian, devscripts)"
done

# --- one version: lmtp.h and debian/changelog ---------------------------------
version=$(sed -n 's/^#define LMTP_VERSION_\(MAJOR\|MINOR\|PATCH\) \+\([0-9]\+\).*/\2/p' \
          "$src/capi/include/lmtp.h" | paste -sd.)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read the version from lmtp.h (got '$version')"
deb_version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
[ "${deb_version%-*}" = "$version" ] ||
    die "packaging/debian/changelog is at $deb_version, lmtp.h at $version: add a changelog entry $version-1 (dch -v $version-1)"
source_name=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Source)
arch=$(dpkg --print-architecture)

work=$(mktemp -d "${TMPDIR:-/tmp}/build-deb.XXXXXX")
if [ "${BUILD_DEB_KEEP:-0}" = 1 ]; then
    echo "build-deb.sh: building in $work (kept: BUILD_DEB_KEEP=1)"
else
    trap 'rm -rf "$work"' EXIT
fi
tree=$work/$source_name-$version

# --- the orig tarball: SRC as it is, without any debian/ ----------------------
cp -a "$src" "$tree"
rm -rf "$tree/debian"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Timestamp)}
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -cf - "$source_name-$version" | xz -6 -T1 > "$work/${source_name}_$version.orig.tar.xz"

cp -a "$tree/packaging/debian" "$tree/debian"

# --- Build-Depends ------------------------------------------------------------
if ! (cd "$tree" && dpkg-checkbuilddeps) 2>"$work/builddeps.txt"; then
    echo "build-deb.sh: $(cat "$work/builddeps.txt"); installing them"
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "need root to install the Build-Depends"
        sudo=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get build-dep -y --no-install-recommends "$tree"; then
        $sudo apt-get update
        $sudo apt-get build-dep -y --no-install-recommends "$tree"
    fi
fi

# --- build --------------------------------------------------------------------
opts=${DEB_BUILD_OPTIONS:-}
[[ " $opts " == *" parallel="* ]] || opts="$opts parallel=$(nproc)"
[[ " $opts " == *autodbgsym* ]] || opts="$opts noautodbgsym"
export DEB_BUILD_OPTIONS=${opts# }
log=$outdir/${source_name}_${deb_version}_$arch.build
echo "build-deb.sh: dpkg-buildpackage -us -uc in $tree (DEB_BUILD_OPTIONS='$DEB_BUILD_OPTIONS'); log: $log"
start=$SECONDS
# The system's tools only, as in a build chroot: pybuild runs "python3.X" from
# PATH, which must be Debian's, not a python3 installed under /usr/local or ~.
if ! (cd "$tree" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc) > "$log" 2>&1; then
    tail -n 80 "$log" >&2
    die "dpkg-buildpackage failed after $((SECONDS - start)) s (the whole log: $log)"
fi
echo "build-deb.sh: built in $((SECONDS - start)) s"
changes=$work/${source_name}_${deb_version}_$arch.changes
[ -f "$changes" ] || die "dpkg-buildpackage wrote no $changes"

# --- lintian ------------------------------------------------------------------
echo "build-deb.sh: lintian --fail-on error,warning $(basename "$changes")"
lintian --fail-on error,warning "$changes" || die "lintian found errors or warnings (above)"

# --- results ------------------------------------------------------------------
expected=(liblmtp1 liblmtp-dev lmtp-send libnet-lmtp-perl python3-lmtp)
for p in "${expected[@]}"; do
    [ -f "$work/${p}_${deb_version}_$arch.deb" ] || die "no ${p}_${deb_version}_$arch.deb was built"
done
dcmd mv "$changes" "$outdir"/
echo "build-deb.sh: put into $outdir: $(cd "$outdir" && ls ${source_name}_"$deb_version"* *_"${deb_version}"_"$arch".deb \
    ${source_name}_"$version".orig.tar.xz | sort -u | tr '\n' ' ')"
