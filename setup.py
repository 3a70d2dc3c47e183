"""Build of mlx-rnn's native MLX primitives (mlx_rnn/native, C++ via CMake and nanobind).

Everything else about the package is in pyproject.toml. The extension is optional: when
it cannot be built (no C++ compiler or cmake, MLX_RNN_NO_NATIVE=1, a platform MLX has no
C++ package for; MLX_RNN_CMAKE names another cmake) the install still succeeds, prints why, and mlx_rnn runs its
Python-level op instead (``mlx_rnn.native.unavailable_reason()`` says why at run time).
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: What the extension must be built with: the MLX it links against (C++ ABI) and the nanobind
#: that MLX itself was built with (MLX rejects arrays from an extension of another nanobind).
MLX_VERSION = "0.32.4"
NANOBIND_VERSION = "3.1.0"
SOURCE_DIR = Path(__file__).resolve().parent / "mlx_rnn" / "native"


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class OptionalCMakeBuild(build_ext):
    """Configure and build mlx_rnn/native with CMake; on failure warn instead of failing."""

    def build_extension(self, ext):
        if os.environ.get("MLX_RNN_NO_NATIVE", "") not in ("", "0"):
            self._skip("MLX_RNN_NO_NATIVE is set")
            return
        try:
            self._check_versions()
            self._cmake(ext)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
            self._skip(str(e).splitlines()[0] if str(e) else e.__class__.__name__)

    def _check_versions(self):
        import importlib.metadata as md

        for pkg, want in (("mlx", MLX_VERSION), ("nanobind", NANOBIND_VERSION)):
            try:
                have = md.version(pkg)
            except md.PackageNotFoundError:
                raise RuntimeError(f"{pkg} is not installed in the build environment (need {pkg}=={want})")
            if have != want:
                raise RuntimeError(f"{pkg} {have} in the build environment, the extension needs {pkg}=={want}")

    def _cmake(self, ext):
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "mlx_rnn_native"
        build_dir.mkdir(parents=True, exist_ok=True)
        cmake = _cmake_exe()
        subprocess.run([cmake, str(SOURCE_DIR), f"-DPython_EXECUTABLE={sys.executable}",
                        f"-DMLX_RNN_OUTPUT_DIR={out_dir}", f"-DMLX_RNN_NANOBIND_VERSION={NANOBIND_VERSION}",
                        f"-DMLX_RNN_MLX_VERSION={MLX_VERSION}", "-DCMAKE_BUILD_TYPE=Release"],
                       cwd=build_dir, check=True)
        subprocess.run([cmake, "--build", ".", f"-j{os.cpu_count() or 2}"], cwd=build_dir, check=True)
        if self.inplace:  # editable install: the module lives beside its sources
            return
        built = list(out_dir.glob("_ext*"))
        if not built:
            raise RuntimeError(f"cmake built no _ext module in {out_dir}")

    def _skip(self, why: str):
        msg = (f"mlx-rnn: the native primitives were not built ({why}); mlx_rnn will use its "
               "Python-level op (slower on the CPU). See README 'Set-up'.")
        print("\n" + "=" * 80 + "\n" + msg + "\n" + "=" * 80, file=sys.stderr)


def _cmake_exe() -> str:
    """$MLX_RNN_CMAKE, else the cmake of the pip 'cmake' package when present, else the one on PATH."""
    if os.environ.get("MLX_RNN_CMAKE"):
        return os.environ["MLX_RNN_CMAKE"]
    try:
        import cmake  # the PyPI package

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except (ImportError, AttributeError):
        return "cmake"


setup(ext_modules=[CMakeExtension("mlx_rnn.native._ext")], cmdclass={"build_ext": OptionalCMakeBuild})
