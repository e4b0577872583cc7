"""Build step the declarative settings of pyproject.toml cannot express: the wheel carries
the default mappings and the XSD/JSON schemas (top-level folders of the repository) inside
the package, as ``gateway/_shipped/{mappings,schemas}`` (see ``gateway/shipped.py``).
Everything else about the build is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: Top-level folder -> the file patterns shipped from it.
SHIPPED = {"mappings": ("*.yaml", "*.j2"), "schemas": ("*",)}


class BuildPyShipped(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's
            return
        root = Path(__file__).resolve().parent
        for name, patterns in SHIPPED.items():
            source = root / name
            if not source.is_dir():  # the sdist lacks them: a broken sdist, not a default
                raise SystemExit(f"setup.py: {source} is missing; cannot ship {name}/")
            target = Path(self.build_lib, "gateway", "_shipped", name)
            for pattern in patterns:
                for file in source.rglob(pattern):
                    if not file.is_file():
                        continue
                    dest = target / file.relative_to(source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, dest)


setup(cmdclass={"build_py": BuildPyShipped})
