"""Builds cnnviz._C by driving CMake; everything else is in pyproject.toml.

The CMake build directory defaults to build/cmake (CNNVIZ_BUILD_DIR overrides it), the
same one `make test` uses for the C++ tests, so an install after a build only links.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        build_dir = Path(os.environ.get("CNNVIZ_BUILD_DIR", ROOT / "build" / "cmake")).resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        jobs = os.environ.get("CNNVIZ_JOBS", str(os.cpu_count() or 2))
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCNNVIZ_PYTHON_EXECUTABLE={sys.executable}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DCNNVIZ_BUILD_PYTHON=ON",
        ]
        if not (build_dir / "CMakeCache.txt").exists():
            configure.append("-DCMAKE_BUILD_TYPE=Release")
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "_C", "-j", jobs])
        built = next((build_dir / "python" / "cnnviz").glob("_C*.so"))
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target)


setup(ext_modules=[CMakeExtension("cnnviz._C")], cmdclass={"build_ext": CMakeBuild})
