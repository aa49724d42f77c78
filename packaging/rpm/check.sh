#!/usr/bin/env bash
# Checks the RPM spec packaging/rpm/liblmtp.spec without building it. Building
# the binary RPMs needs Fedora's macros (%cmake, %pyproject_*, %perl_vendorarch...),
# which Debian's rpm does not have; this checks what can be checked here:
#   1. Version: is the version of capi/include/lmtp.h, and the newest %changelog
#      entry is for Version-Release;
#   2. rpmspec -P parses the spec as it is (Fedora's macros left unexpanded), and
#      with stand-ins for Fedora's macros given by --define (never in the spec),
#      after which no macro is left unexpanded: a misspelt one would be;
#   3. the spec makes the five binary packages, each under the MIT license, and
#      builds with what it must (--with dovecot adds Dovecot);
#   4. rpmlint finds no error and no warning, with the filters of
#      packaging/rpm/rpmlintrc (Debian-only warnings, each explained there).
# Usage: packaging/rpm/check.sh        (no arguments; needs rpm and rpmlint:
#        apt-get install rpm rpmlint). Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
spec=$here/liblmtp.spec
header=$root/capi/include/lmtp.h

fail() {
    echo "packaging/rpm/check.sh: FAIL: $*" >&2
    exit 1
}
[ $# -eq 0 ] || { echo "usage: packaging/rpm/check.sh" >&2; exit 2; }
for tool in rpmspec rpmlint perl; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install rpm rpmlint)"
done
[ -f "$spec" ] || fail "no $spec"
[ -f "$header" ] || fail "no $header"

# rpmlint runs rpm with LC_ALL=en_US.UTF-8, which Debian may not have
# generated: perl (run by the spec for perl(:MODULE_COMPAT_...)) would then
# warn on stderr, and rpmlint reports rpm's stderr as errors.
export PERL_BADLANG=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmtp-rpm-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ---- 1. the version --------------------------------------------------------------------
version=$(for part in MAJOR MINOR PATCH; do
              sed -n "s/^#define LMTP_VERSION_$part  *\([0-9][0-9]*\)\$/\1/p" "$header"
          done | paste -sd.)
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "no MAJOR.MINOR.PATCH in $header (got '$version')"
# Without a dist macro (Debian defines none), Release is the spec's own number.
spec_vr=$(rpmspec -q --srpm --undefine dist --qf '%{VERSION} %{RELEASE}\n' "$spec" 2>"$tmp/err") ||
    { cat "$tmp/err" >&2; fail "rpmspec -q cannot read the spec"; }
read -r spec_version spec_release <<<"$spec_vr"
[ "$spec_version" = "$version" ] ||
    fail "the spec's Version is $spec_version, lmtp.h says $version: change Version: in $spec"
newest=$(rpmspec -q --srpm --undefine dist --qf '%{CHANGELOGNAME}\n' "$spec")
[[ "$newest" == *" - $spec_version-$spec_release" ]] ||
    fail "the newest %changelog entry ('$newest') is not for $spec_version-$spec_release"
echo "version: lmtp.h $version, spec $spec_version-$spec_release, newest %changelog entry agrees"

# ---- 2. rpmspec -P -----------------------------------------------------------------------
rpmspec -P "$spec" >"$tmp/plain" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "rpmspec -P failed"; }
[ ! -s "$tmp/err" ] || { cat "$tmp/err" >&2; fail "rpmspec -P printed errors or warnings"; }

# Stand-ins for Fedora's macros, shaped like Fedora's own (cmake-rpm-macros,
# pyproject-rpm-macros, perl-macros, python-rpm-macros): enough to read the
# expanded build, install and check scripts; nothing here is built.
build=redhat-linux-build
fedora=(
    --define "__cmake /usr/bin/cmake"
    --define "__ctest /usr/bin/ctest"
    --define "__cmake_builddir $build"
    --define "cmake %{__cmake} -S . -B $build -DCMAKE_INSTALL_PREFIX:PATH=%{_prefix} -DBUILD_SHARED_LIBS:BOOL=ON"
    --define "cmake_build %{__cmake} --build $build %{?_smp_mflags} --verbose"
    --define "cmake_install DESTDIR=\"%{buildroot}\" %{__cmake} --install $build"
    --define "ctest %{__ctest} --test-dir $build --output-on-failure --force-new-ctest-process %{?_smp_mflags}"
    --define "__python3 /usr/bin/python3"
    --define "python3_sitearch %{_libdir}/python3/site-packages"
    --define "pyproject_files %{_builddir}/pyproject-files"
    --define "pyproject_buildrequires %{__python3} -Bs /usr/lib/rpm/redhat/pyproject_buildrequires.py"
    --define "pyproject_wheel %{__python3} -Bs /usr/lib/rpm/redhat/pyproject_wheel.py %{_builddir}/pyproject-wheeldir"
    --define "pyproject_install %{__python3} -m pip install --root %{buildroot} --prefix %{_prefix} --no-deps --no-index --no-warn-script-location %{_builddir}/pyproject-wheeldir/*.whl"
    --define "pyproject_save_files %{__python3} /usr/lib/rpm/redhat/pyproject_save_files.py --output-files %{pyproject_files} --buildroot %{buildroot} --sitearch %{python3_sitearch}"
    --define "pyproject_check_import PYTHONPATH=%{buildroot}%{python3_sitearch} %{__python3} /usr/lib/rpm/redhat/import_all_modules.py -f %{pyproject_files}"
    --define "pytest PYTHONPATH=%{buildroot}%{python3_sitearch} PYTHONDONTWRITEBYTECODE=1 /usr/bin/pytest"
    --define "perl_vendorarch %{_libdir}/perl5/vendor_perl"
)
rpmspec -P "${fedora[@]}" "$spec" >"$tmp/expanded" 2>"$tmp/err" ||
    { cat "$tmp/err" >&2; fail "rpmspec -P with Fedora's macros stood in failed"; }
[ ! -s "$tmp/err" ] || { cat "$tmp/err" >&2; fail "rpmspec -P with Fedora's macros stood in printed errors or warnings"; }
# Left: section headers and %files directives only (comments aside).
left=$(grep -nE '%[{?A-Za-z_(]' "$tmp/expanded" |
       grep -vE '^[0-9]+:[[:space:]]*(#|%(package|description|prep|generate_buildrequires|build|install|check|files|changelog|license|doc|dir)([[:space:]]|$))' || true)
[ -z "$left" ] || fail "macros left unexpanded (misspelt, or a Fedora macro without a stand-in here):
$left"
for script in build install check; do
    grep -q "^%$script\$" "$tmp/expanded" || fail "no %$script section"
done
echo "rpmspec -P: parses as it is ($(wc -l <"$tmp/plain") lines) and with Fedora's macros stood in (no macro left)"

# ---- 3. packages, licenses, build requirements ---------------------------------------------
packages=$(rpmspec -q --undefine dist --qf '%{NAME} %{LICENSE}\n' "$spec" | sort)
expected=$(printf '%s MIT\n' liblmtp liblmtp-devel lmtp-send perl-Net-LMTP python3-lmtp | sort)
[ "$packages" = "$expected" ] || fail "the spec's packages and licenses are
$packages
not
$expected"
brs=$(rpmspec -q --buildrequires "$spec")
for br in cmake gcc-c++ make pkgconfig openssl-devel gtest-devel libcmocka-devel perl-devel \
          'perl(ExtUtils::MakeMaker)' python3-devel pybind11-devel python3-pytest python3-uvloop; do
    grep -qE "^$(sed 's/[()+.:]/\\&/g' <<<"$br")( |$)" <<<"$brs" || fail "no BuildRequires: $br"
done
if grep -q '^dovecot' <<<"$brs"; then fail "dovecot is a build requirement without --with dovecot"; fi
rpmspec -q --buildrequires --with dovecot "$spec" | grep -q '^dovecot$' ||
    fail "--with dovecot does not add BuildRequires: dovecot"
echo "packages: $(cut -d' ' -f1 <<<"$packages" | paste -sd' '), all MIT; build requirements present"

# ---- 4. rpmlint ---------------------------------------------------------------------------
set +e
rpmlint -r "$here/rpmlintrc" "$spec" >"$tmp/lint" 2>&1
lint_rc=$?
set -e
sed 's/^/  /' "$tmp/lint"
grep -qE ': [EW]: ' "$tmp/lint" && fail "rpmlint reports errors or warnings (above)"
[ "$lint_rc" -eq 0 ] || fail "rpmlint exited with $lint_rc"
grep -qE '1 specfiles checked; 0 errors, 0 warnings' "$tmp/lint" ||
    fail "rpmlint did not check the spec (no '1 specfiles checked; 0 errors, 0 warnings')"
echo "rpmlint: 0 errors, 0 warnings"

echo "packaging/rpm/check.sh: liblmtp.spec ($spec_version-$spec_release) checked"
