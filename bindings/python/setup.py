"""Build the lmtp Python package with CMake (bindings/python/CMakeLists.txt).

The extension lmtp._lmtp is not compiled by setuptools: build_ext configures
the CMakeLists.txt next to this file with CMake in a directory under
build_temp, builds its `_lmtp` target (and the core it links), and copies the
result into the package in build_lib. Everything else about the package
(name, metadata, the pure-Python files, *.pyi and py.typed) is in
pyproject.toml.

Two layouts, the same build:
- a liblmtp checkout: the core and lmtp.h are two folders up (../../core,
  ../../capi/include);
- the sdist (lmtp-X.Y.Z.tar.gz, made by packaging/build-sdist.sh from a
  staged copy): core/ and capi/include/lmtp.h sit next to this file.
`setup.py sdist` works only in the second (the staged tree); in a checkout it
stops and names packaging/build-sdist.sh, which stages and packs the sdist.

Works offline, e.g. on Debian 12:

    pip install --no-build-isolation --no-index ./bindings/python
    pip install --no-index --find-links /usr/share/python-wheels lmtp-X.Y.Z.tar.gz

Needs cmake (>= 3.16), a C++17 compiler, OpenSSL's development files, the
Python development headers of the interpreter running this file, and
pybind11's CMake package: the Python package pybind11 when it can be imported
(without build isolation), else the one CMake finds (Debian: pybind11-dev).
pybind11 is not a build requirement in pyproject.toml, so that an isolated
build needs nothing beyond setuptools and wheel.

Flags: CPPFLAGS and CXXFLAGS (CFLAGS when CXXFLAGS is not set, as setuptools
would use it) reach every compiled object, LDFLAGS the link of the module,
after the build type's optimisation level (-O3 for Release), so the
environment has the last word (dpkg-buildflags' -O2 and hardening flags, for
one). pybind11's link-time optimisation and stripping are off.

The source tree stays clean: unless a build directory is given explicitly
(--build-base, or the LMTP_SETUP_BUILD_BASE environment variable), build/ and
the .egg-info directory go to a temporary directory that is removed when
setup.py exits. (So `setup.py build` alone keeps nothing; pip, bdist_wheel
and build_ext --inplace are unaffected. sdist, run only in a staged tree,
keeps its .egg-info there: setuptools packs it from there.)

Environment: CMAKE_ARGS (extra configure arguments, split like a shell
would, given last), CMAKE_BUILD_PARALLEL_LEVEL, CMAKE_GENERATOR, CMAKE (the
cmake program), CFLAGS, CXXFLAGS, CPPFLAGS, LDFLAGS, LMTP_SETUP_BUILD_BASE.
"""

import atexit
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.egg_info import egg_info as _egg_info
from setuptools.command.sdist import sdist as _sdist

try:
    from setuptools.command.build import build as _build
except ImportError:  # setuptools < 62.4
    from distutils.command.build import build as _build

HERE = Path(__file__).resolve().parent
# The sdist carries the core next to this file; a checkout has it two up.
STAGED = (HERE / "core" / "CMakeLists.txt").is_file()
ROOT = HERE if STAGED else HERE.parent.parent
HEADER = ROOT / "capi" / "include" / "lmtp.h"


def lmtp_version():
    """MAJOR.MINOR.PATCH from the LMTP_VERSION_* macros of lmtp.h, the one
    place the version lives (the top-level CMakeLists.txt reads it too)."""
    try:
        text = HEADER.read_text(encoding="utf-8")
    except OSError as e:
        sys.exit("setup.py: cannot read lmtp.h, where the version lives: %s" % e)
    parts = []
    for name in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(r"^#define LMTP_VERSION_%s +([0-9]+)\b" % name, text, re.M)
        if not m:
            sys.exit("setup.py: no LMTP_VERSION_%s in %s" % (name, HEADER))
        parts.append(m.group(1))
    return ".".join(parts)


_scratch = None


def scratch_dir():
    """Where build/ and the .egg-info go by default: outside the source tree."""
    global _scratch
    if _scratch is None:
        given = os.environ.get("LMTP_SETUP_BUILD_BASE")
        if given:
            _scratch = os.path.abspath(given)
            os.makedirs(_scratch, exist_ok=True)
        else:
            _scratch = tempfile.mkdtemp(prefix="lmtp-setup-")
            atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


class build(_build):
    def initialize_options(self):
        super().initialize_options()
        # A --build-base on the command line still overrides this.
        self.build_base = os.path.join(scratch_dir(), "build")


class egg_info(_egg_info):
    def finalize_options(self):
        # dist_info (pip's metadata step) sets egg_base itself; everything
        # else would write lmtp.egg-info next to this file. sdist packs the
        # .egg-info from the source tree, so it keeps setuptools' place
        # (sdist runs only in a staged copy, see below).
        if self.egg_base is None and "sdist" not in self.distribution.commands:
            self.egg_base = scratch_dir()
        super().finalize_options()


class sdist(_sdist):
    def run(self):
        if not STAGED:
            sys.exit(
                "setup.py sdist: in a liblmtp checkout the sdist would lack the C++ core "
                "(%s): make it with packaging/build-sdist.sh SRC OUTDIR, which stages "
                "bindings/python with the core and packs that" % (ROOT / "core"))
        super().run()


class CMakeExtension(Extension):
    """An extension built by the CMake target of the same (last) name."""

    def __init__(self, name, target):
        super().__init__(name, sources=[])
        self.target = target


def flag_args(debug):
    """The environment's compiler and linker flags as CMake cache entries.

    CMake itself would read CXXFLAGS and LDFLAGS, but not CPPFLAGS, and would
    put the build type's flags (-O3 -DNDEBUG) after them. Here CPPFLAGS and
    CXXFLAGS (or CFLAGS, as setuptools would use it for C++ too) come last,
    after the build type's optimisation level, so that e.g. dpkg-buildflags'
    -O2 -g and hardening flags are what every object gets."""
    env = os.environ
    cxxflags = env["CXXFLAGS"] if "CXXFLAGS" in env else env.get("CFLAGS", "")
    given = " ".join(f for f in (env.get("CPPFLAGS", ""), cxxflags) if f.strip())
    ldflags = env.get("LDFLAGS", "")
    if debug:
        cxx, cxx_config = given, "-g"
    else:
        cxx, cxx_config = ("-O3 " + given).strip(), "-DNDEBUG"
    config = "DEBUG" if debug else "RELEASE"
    return [
        "-DCMAKE_CXX_FLAGS=" + cxx,
        "-DCMAKE_CXX_FLAGS_%s=%s" % (config, cxx_config),
        "-DCMAKE_MODULE_LINKER_FLAGS=" + ldflags,
        "-DCMAKE_SHARED_LINKER_FLAGS=" + ldflags,
    ]


def run(cmd, **kwargs):
    print("+ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


class build_ext(_build_ext):
    def run(self):
        for ext in self.extensions:
            self.build_extension(ext)

    def cmake_configure(self, build_dir):
        cmake = os.environ.get("CMAKE", "cmake")
        if shutil.which(cmake) is None:
            raise RuntimeError("cmake is needed to build the lmtp extension (apt-get install cmake)")
        # Ask CMake's file API where the target's file will be, rather than
        # guessing the build tree's layout.
        query = build_dir / ".cmake" / "api" / "v1" / "query"
        query.mkdir(parents=True, exist_ok=True)
        (query / "codemodel-v2").touch()
        args = [
            "-S", HERE, "-B", build_dir,
            "-DLMTP_SOURCE_DIR=%s" % ROOT,
            # The interpreter running setup.py, never CMake's default one.
            "-DPython_EXECUTABLE=" + sys.executable,
            "-DCMAKE_BUILD_TYPE=" + ("Debug" if self.debug else "Release"),
            *flag_args(self.debug),
        ]
        extra = shlex.split(os.environ.get("CMAKE_ARGS", ""))
        if not any(a.startswith("-Dpybind11_DIR") for a in extra):
            try:
                import pybind11
                pybind11_dir = pybind11.get_cmake_dir()
            except (ImportError, AttributeError, OSError):
                pybind11_dir = None  # leave it to find_package
            if pybind11_dir and os.path.isfile(os.path.join(pybind11_dir, "pybind11Config.cmake")):
                args.append("-Dpybind11_DIR=" + pybind11_dir)
        run([cmake, *args, *extra])
        return cmake

    def cmake_artifact(self, build_dir, target):
        reply = build_dir / ".cmake" / "api" / "v1" / "reply"
        index = sorted(reply.glob("index-*.json"))
        if not index:
            raise RuntimeError("CMake wrote no file-API reply in %s" % reply)
        index = json.loads(index[-1].read_text())
        codemodel = next(o for o in index["objects"] if o["kind"] == "codemodel")
        codemodel = json.loads((reply / codemodel["jsonFile"]).read_text())
        configs = codemodel["configurations"]
        # Multi-config generators list every configuration: take the one built.
        configs.sort(key=lambda c: c["name"] != ("Debug" if self.debug else "Release"))
        for config in configs:
            for t in config["targets"]:
                if t["name"] == target:
                    info = json.loads((reply / t["jsonFile"]).read_text())
                    path = Path(info["artifacts"][0]["path"])
                    return path if path.is_absolute() else build_dir / path
        raise RuntimeError(
            "CMake defined no target %r (see the CMake output above)" % target)

    def build_extension(self, ext):
        build_dir = Path(self.build_temp).resolve() / "cmake"
        cmake = self.cmake_configure(build_dir)
        artifact = self.cmake_artifact(build_dir, ext.target)

        cmd = [cmake, "--build", build_dir, "--target", ext.target,
               "--config", "Debug" if self.debug else "Release"]
        if self.parallel:
            cmd += ["--parallel", str(self.parallel)]
        elif "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            cmd += ["--parallel", str(os.cpu_count() or 1)]
        run(cmd)

        dest = Path(self.get_ext_fullpath(ext.name))
        if artifact.name != dest.name:
            raise RuntimeError(
                "CMake built %s but %s imports %s: the extension was built for another interpreter"
                % (artifact.name, sys.executable, dest.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(artifact), str(dest))


def system_pybind11():
    """Whether pybind11's CMake package is installed where CMake looks by
    itself (Debian's pybind11-dev: /usr/lib/cmake/pybind11), or given."""
    if "pybind11_DIR" in os.environ or "-Dpybind11_DIR" in os.environ.get("CMAKE_ARGS", ""):
        return True
    prefixes = {sys.prefix, sys.base_prefix, "/usr", "/usr/local"}
    prefixes.update(p for p in os.environ.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if p)
    for prefix in prefixes:
        for libdir in ("lib", "lib64", "share", "lib/%s" % getattr(sys.implementation, "_multiarch", "")):
            if os.path.isfile(os.path.join(prefix, libdir, "cmake", "pybind11", "pybind11Config.cmake")):
                return True
    return False


def pybind11_requirement():
    """pybind11 as a build requirement only when it is needed: not importable
    and no CMake package of it on the system. An isolated build (pip install
    lmtp-X.Y.Z.tar.gz) then fetches it where an index is reachable, and needs
    nothing beyond setuptools and wheel where the system has it (offline,
    Debian's pybind11-dev)."""
    try:
        import pybind11  # noqa: F401
        return []
    except ImportError:
        pass
    return [] if system_pybind11() else ["pybind11>=2.6"]


setup(
    version=lmtp_version(),
    ext_modules=[CMakeExtension("lmtp._lmtp", target="_lmtp")],
    cmdclass={"build": build, "build_ext": build_ext, "egg_info": egg_info, "sdist": sdist},
    # Build-time only: setuptools' PEP 517 backend reports these from
    # get_requires_for_build_wheel, so pip installs them into an isolated build.
    setup_requires=pybind11_requirement(),
)
