"""The model cache: where a conversion of a source lives (named by the source, so a changed source
converts again), how a conversion gets there whole, and how a serving worker has one made apart."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import structlog

log = structlog.get_logger()


def convert_apart(source: Path, engine: Literal["openvino", "onnx"], cache_dir: Path) -> None:
    """Convert the source into the cache with `python -m workers.convert` in a child process, so
    that what only the conversion needs (torch, transformers' loaders, the source's weights read
    whole) does not stay in the serving worker's memory. Measured: an OpenVINO embedding worker
    holds 289 MB, about 500 with the export done in it; the OpenVINO chat worker at rest after
    converting the GGUF itself 614 MB, 338 after a conversion apart."""
    log.info("converting into the model cache in a child process (once)", source=str(source), to=engine)
    command = [sys.executable, "-m", "workers.convert", str(source), "--to", engine]
    result = subprocess.run([*command, "--cache-dir", str(cache_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        reason = said[-1] if said else f"exit code {result.returncode}"
        raise RuntimeError(f"converting {source.name} for {engine} failed: {reason}")


def entry(engine_cache: Path, name: str, *sources: Path, extra: str = "") -> Path:
    """engine_cache/NAME-HASH, the hash of the sources' paths and sizes (and `extra`)."""
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size}" for p in sources) + extra
    return engine_cache / f"{name}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


_STAGING = ".converting-"  # then the converting process's pid, a dash, a random part


def sweep(directory: Path) -> None:
    """Remove the staging directories of conversions whose process is gone (killed mid-way:
    an unload during a conversion); those of live processes are theirs."""
    for stale in directory.glob(f"{_STAGING}*"):
        pid = stale.name.removeprefix(_STAGING).split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Staging(NamedTuple):
    model: Path  # write the finished model here
    scratch: Path  # anything else (intermediate files), removed after


@contextlib.contextmanager
def staged(target: Path, done: str) -> Iterator[Staging]:
    """Convert into a private directory beside `target`; when the block ends without error and
    wrote `done`, the model directory is renamed to `target` whole, so no reader sees half a model
    (and of two workers converting at once, the second finds the first's). Scratch goes always."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target.parent)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{_STAGING}{os.getpid()}-"))
    model = scratch / "model"
    model.mkdir()
    try:
        yield Staging(model, scratch)
        if not (model / done).exists():
            raise RuntimeError(f"the conversion wrote no {done} for {target.name}")
        try:
            model.rename(target)
        except OSError:
            if not (target / done).exists():  # not another worker converting the same at once
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
