"""Build hook: ship the top-level ``mod/``, ``params/`` and ``data/`` folders.

The project layout keeps mechanisms, parameter files and generated data at
the repository root; an installed (non-editable) package needs its own copy,
which this hook places under ``hnnfit/_resources/`` in the build tree.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"mod": ("*.mod",), "params": ("*.json", "*.param"), "data": ("*.txt", "*.json", "*.csv", "*.toml")}


class BuildWithResources(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        dest_root = Path(self.build_lib) / "hnnfit" / "_resources"
        for folder, patterns in SHIPPED.items():
            dest = dest_root / folder
            dest.mkdir(parents=True, exist_ok=True)
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    shutil.copy2(src, dest / src.name)


setup(cmdclass={"build_py": BuildWithResources})
