"""Build the lmtp Python package with the repository's own CMake build.

The extension lmtp._lmtp is not compiled by setuptools: build_ext configures
the whole repository (bindings/python/../..) with CMake in a directory under
build_temp, builds only the `_lmtp` target (and the core it links), and
copies the result into the package in build_lib. Everything else about the
package (name, metadata, the pure-Python files, *.pyi and py.typed) is in
pyproject.toml.

Works offline and without build isolation, e.g. on Debian 12:

    pip install --no-build-isolation --no-index ./bindings/python

Needs cmake (>= 3.16), a C++17 compiler, the Python development headers of
the interpreter running this file, and pybind11's CMake package (Debian:
pybind11-dev or python3-pybind11).

The source tree stays clean: unless a build directory is given explicitly
(--build-base, or the LMTP_SETUP_BUILD_BASE environment variable), build/ and
the .egg-info directory go to a temporary directory that is removed when
setup.py exits. (So `setup.py build` alone keeps nothing; pip, bdist_wheel
and build_ext --inplace are unaffected.)

Environment: CMAKE_ARGS (extra configure arguments, split like a shell
would), CMAKE_BUILD_PARALLEL_LEVEL, CMAKE_GENERATOR.
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

try:
    from setuptools.command.build import build as _build
except ImportError:  # setuptools < 62.4
    from distutils.command.build import build as _build

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HEADER = ROOT / "capi" / "include" / "lmtp.h"


def lmtp_version():
    """MAJOR.MINOR.PATCH from the LMTP_VERSION_* macros of lmtp.h, the one
    place the version lives (the top-level CMakeLists.txt reads it too)."""
    text = HEADER.read_text(encoding="utf-8")
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
        # else would write lmtp.egg-info next to this file.
        if self.egg_base is None:
            self.egg_base = scratch_dir()
        super().finalize_options()


class CMakeExtension(Extension):
    """An extension built by the CMake target of the same (last) name."""

    def __init__(self, name, target):
        super().__init__(name, sources=[])
        self.target = target


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
            "-S", ROOT, "-B", build_dir,
            "-DLMTP_BUILD_TESTS=OFF",
            "-DLMTP_BUILD_PERL=OFF",
            "-DLMTP_BUILD_PYTHON=ON",
            # The interpreter running setup.py, never CMake's default one.
            "-DPython_EXECUTABLE=" + sys.executable,
            "-DCMAKE_BUILD_TYPE=" + ("Debug" if self.debug else "Release"),
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
            "CMake defined no target %r: pybind11 or the development files of %s were not found "
            "(see the CMake warnings above; Debian: apt-get install pybind11-dev python3-dev)"
            % (target, sys.executable))

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


setup(
    version=lmtp_version(),
    ext_modules=[CMakeExtension("lmtp._lmtp", target="_lmtp")],
    cmdclass={"build": build, "build_ext": build_ext, "egg_info": egg_info},
)
