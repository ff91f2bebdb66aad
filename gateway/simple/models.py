"""The simple REST server's model and system routes: load, current, available, unload, system/info.
They answer from the router's registry and the supervisor, like /v1/models/*, in their own shapes."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys

import psutil
from aiohttp import web
from pydantic import Field

from gateway.errors import APIError
from gateway.http.body import StrictBody, read_body
from gateway.state import ROUTER, SETTINGS, SUPERVISOR

DEVICES = web.AppKey("devices", asyncio.Task[dict[str, object]])
DEVICE_PROBE_TIMEOUT = 60.0  # importing torch, OpenVINO and ONNX Runtime takes seconds, not minutes


class ModelId(StrictBody):
    model_id: str | None = Field(None, min_length=1)


def _describe(request: web.Request, model: str) -> dict[str, object]:
    """What its workers registered, else what the server was told (a remote-only model has only
    the former)."""
    status = request.app[ROUTER].models[model].status()
    spec = request.app[SUPERVISOR].specs.get(model)
    tasks = [spec.task] if spec else status["tasks"]
    return {
        "model_id": model,
        "state": status["state"],
        "loaded": status["state"] == "ready",
        "task": next(
            (t for t in ("generate", "embedding", "rerank", "transcription") if t in tasks), "generate"
        ),  # type: ignore[operator]
        "engine": status["engine"] or (spec and spec.engine),
        "device": status["device"] or (spec and spec.device),
        "context_length": status["context_length"],
    }


async def _which(request: web.Request, required: bool) -> str:
    body = await read_body(request, ModelId) if request.can_read_body else ModelId()
    if body.model_id is None:
        if required:
            raise APIError(
                400, "Name the model to load: `model_id`.", "missing_required_parameter", "model_id"
            )
        return request.app[SETTINGS].default_model()
    request.app[ROUTER].model(body.model_id, param="model_id")
    return body.model_id


async def load(request: web.Request) -> web.Response:
    model = await _which(request, required=True)
    await request.app[ROUTER].wait_ready(model)
    return web.json_response({"status": "loaded", **_describe(request, model)})


async def unload(request: web.Request) -> web.Response:
    """Unload `model_id`, or without one the current (default chat) model."""
    model = await _which(request, required=False)
    await request.app[SUPERVISOR].unload(model)
    return web.json_response({"status": "unloaded", **_describe(request, model)})


async def current(request: web.Request) -> web.Response:
    """The model /generate and /chat use when a request names none, and every loaded model."""
    router = request.app[ROUTER]
    loaded = [name for name, state in router.models.items() if state.workers]
    model = request.app[SETTINGS].default_model()
    return web.json_response({**_describe(request, model), "loaded_models": loaded})


async def available(request: web.Request) -> web.Response:
    return web.json_response({"models": [_describe(request, name) for name in request.app[ROUTER].models]})


async def system_info(request: web.Request) -> web.Response:
    """The CPU and memory here, the devices OpenVINO, ONNX Runtime and torch can see (asked of a
    worker-side process once, as the gateway imports no engine), and the loaded models."""
    if DEVICES not in request.app:
        request.app[DEVICES] = asyncio.create_task(_devices())
    memory = psutil.virtual_memory()
    loaded = [name for name, state in request.app[ROUTER].models.items() if state.workers]
    return web.json_response(
        {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu": {
                "model": _cpu_model(),
                "cores": psutil.cpu_count(logical=False),
                "threads": os.cpu_count(),
                "percent": psutil.cpu_percent(interval=None),
            },
            "memory": {
                "total_bytes": memory.total,
                "available_bytes": memory.available,
                "percent": memory.percent,
            },
            "devices": await asyncio.shield(request.app[DEVICES]),
            "loaded_models": [_describe(request, name) for name in loaded],
        }
    )


async def _devices() -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.devices",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), DEVICE_PROBE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {"error": f"the device probe took longer than {DEVICE_PROBE_TIMEOUT:g} s"}
    if process.returncode != 0:
        return {"error": err.decode(errors="replace").strip().splitlines()[-1:]}
    found: dict[str, object] = json.loads(out)
    return found


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
