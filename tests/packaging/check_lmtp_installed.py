"""Checks that `import lmtp`, run by a venv's python from a directory outside the source tree,
is the copy installed in that venv's site-packages, and that it is complete.

    VENV/bin/python check_lmtp_installed.py VENV SOURCE_DIR VERSION [--license-file]

The module is the venv's (sys.prefix, its site-packages), not the source tree's; lmtp._lmtp
sits beside it; the stubs and the PEP 561 marker are installed and in the RECORD with the
extension; the version is lmtp.h's (lmtp.__version__ and the metadata); the license is MIT.
--license-file: the LICENSE file is installed too (a wheel built from the sdist carries it; one
built in a checkout cannot, the file being two folders up). Used by tests/packaging/
python_install.sh and packaging/check-sdist.sh. Exits 1 after listing what is wrong.
"""
import importlib.metadata
import os
import sys
import sysconfig


def under(path, top):
    path, top = os.path.realpath(path), os.path.realpath(top)
    return os.path.commonpath([path, top]) == top


def main():
    args = sys.argv[1:]
    license_file = "--license-file" in args
    args = [a for a in args if a != "--license-file"]
    if len(args) != 3:
        sys.exit(__doc__)
    venv, source, version = os.path.realpath(args[0]), os.path.realpath(args[1]), args[2]

    errors = []
    if not under(sys.prefix, venv):
        errors.append("sys.prefix %s is not the venv %s" % (sys.prefix, venv))

    import lmtp
    import lmtp._lmtp

    pkgdir = os.path.dirname(os.path.realpath(lmtp.__file__))
    site = {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")}
    if os.path.dirname(pkgdir) not in site or not under(pkgdir, venv):
        errors.append("lmtp was imported from %s, not from the venv's site-packages %s" % (pkgdir, sorted(site)))
    if under(pkgdir, source):
        errors.append("lmtp was imported from the source tree (%s)" % pkgdir)
    if os.path.dirname(os.path.realpath(lmtp._lmtp.__file__)) != pkgdir:
        errors.append("lmtp._lmtp (%s) is not in the installed package %s" % (lmtp._lmtp.__file__, pkgdir))
    for name in ("__init__.pyi", "py.typed"):
        if not os.path.isfile(os.path.join(pkgdir, name)):
            errors.append("%s is not installed in %s" % (name, pkgdir))

    dist = importlib.metadata.distribution("lmtp")
    if lmtp.__version__ != version or dist.version != version:
        errors.append("version %s (metadata %s), lmtp.h says %s" % (lmtp.__version__, dist.version, version))
    files = {str(f) for f in dist.files or []}
    for name in ("lmtp/__init__.py", "lmtp/aio.py", "lmtp/__init__.pyi", "lmtp/py.typed"):
        if name not in files:
            errors.append("%s is not in the distribution's RECORD" % name)
    if not any(f.startswith("lmtp/_lmtp.") for f in files):
        errors.append("the extension is not in the distribution's RECORD")
    if dist.metadata["License"] != "MIT":
        errors.append("License: %r, not MIT" % dist.metadata["License"])
    if license_file and not any(f.endswith("/LICENSE") for f in files):
        errors.append("no LICENSE in the installed distribution")

    for e in errors:
        print("FAIL:", e, file=sys.stderr)
    print("lmtp %s from %s" % (lmtp.__version__, lmtp._lmtp.__file__))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
