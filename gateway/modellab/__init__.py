"""The model-lab API's routes that a server has a use for: what this installation can convert
(/api/convert/cross/paths), the models it carries (/api/assets/catalog), and conversions as jobs
(POST /api/convert/cross, GET /api/convert/cross/{job_id}; an admin key when keys are set). The
rest of that API (fine-tuning, Hub publishing, GGUF quantization, LiteRT) answers 501: this is a
server, not a model lab. Errors are `{"detail"}`, as that API has them."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import Field

from gateway.config import DEFAULT_MODELS, default_source
from gateway.errors import APIError
from gateway.http.body import StrictBody, read_body
from gateway.http.openapi import Route
from gateway.modellab.jobs import Conversions
from gateway.state import ERROR_STYLES, SETTINGS

NOT_HERE = (
    "enginehouse is a server, not a model lab: fine-tuning, Hub publishing, GGUF quantization and "
    "LiteRT conversion are not part of it. Do them with the tools made for them, then serve the result."
)
FRESH_FOR = 30.0  # seconds what the installed tools can do is taken as known
CONVERSIONS = web.AppKey("conversions", Conversions)
_DISCOVERED = web.AppKey("discovered", dict)


class ConvertBody(StrictBody):
    source: str = Field(
        min_length=1
    )  # a packaged id, a GGUF file, a Hugging Face directory, pkg:PACKAGE/PATH
    to: Literal["openvino", "onnx"]
    weight_format: Literal["fp16", "int8", "int4"] | None = None  # openvino
    precision: Literal["gguf", "int4", "fp16", "fp32"] | None = None  # onnx
    npu: bool = False  # openvino: the NPU's weights (symmetric, int4 channel-wise)

    def arguments(self, cache_dir: Path) -> list[str]:
        if self.to == "onnx" and (self.weight_format or self.npu):
            raise APIError(400, "`weight_format` and `npu` are for `to: openvino`; use `precision`.")
        if self.to == "openvino" and self.precision:
            raise APIError(400, "`precision` is for `to: onnx`; use `weight_format`.")
        source = default_source(self.source)
        if not source.startswith("pkg:") and not Path(source).expanduser().exists():
            raise APIError(404, f"No model at {self.source!r} on the server (nor a packaged id).")
        arguments = [source, "--to", self.to, "--cache-dir", str(cache_dir)]
        if self.weight_format:
            arguments += ["--weight-format", self.weight_format]
        if self.precision:
            arguments += ["--precision", self.precision]
        return [*arguments, "--npu"] if self.npu else arguments


ROUTES = [
    Route("/api/convert/cross/paths", "The conversions this installation can do", errors="detail"),
    Route("/api/assets/catalog", "The packaged models: variants, sizes, tasks", errors="detail"),
    Route("/api/convert/cross", "Start a conversion job (admin)", ConvertBody, errors="detail"),
]


async def discover(app: web.Application) -> dict:
    """workers.conversions' report (the workers' code knows the converters), kept briefly."""
    known = app[_DISCOVERED]
    if known and time.monotonic() - known["at"] < FRESH_FOR:
        return known["report"]
    sources = sorted({m.source for m in DEFAULT_MODELS})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.conversions", *sources, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise APIError(500, "Could not work out what this installation can convert.")
    known.update(report=json.loads(out), at=time.monotonic())
    return known["report"]


async def paths(request: web.Request) -> web.Response:
    report = await discover(request.app)
    return web.json_response({"paths": report["paths"], "not_here": NOT_HERE})


async def catalog(request: web.Request) -> web.Response:
    sizes = (await discover(request.app))["sources"]
    bases = [m for m in DEFAULT_MODELS if m.preload]
    models = [
        {
            "id": base.id,
            "task": base.task,
            "engine": base.engine,
            "source": base.source,
            "bytes": sizes[base.source]["bytes"],
            "present": sizes[base.source]["present"],
            "variants": [
                {"id": m.id, "engine": m.engine}
                for m in DEFAULT_MODELS
                if m.source == base.source and m is not base
            ],
        }
        for base in bases
    ]
    return web.json_response({"models": models})


async def convert(request: web.Request) -> web.Response:
    body = await read_body(request, ConvertBody)
    job = request.app[CONVERSIONS].submit(body.arguments(request.app[SETTINGS].cache_dir))
    return web.json_response(job.view(), status=202)


async def job(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONVERSIONS].get(request.match_info["job_id"]).view())


SERVED = {"/api/convert/cross/paths": "GET", "/api/assets/catalog": "GET", "/api/convert/cross": "POST"}


async def not_here(request: web.Request) -> web.Response:
    """501 for the model-lab routes a server leaves out; 405 for another method on a served one."""
    path = request.path
    served = SERVED.get(path) or ("GET" if path.startswith("/api/convert/cross/") else None)
    if served is not None:
        raise web.HTTPMethodNotAllowed(request.method, [served])
    raise APIError(501, NOT_HERE, "not_implemented")


async def _conversions(app: web.Application) -> AsyncIterator[None]:
    app[CONVERSIONS], app[_DISCOVERED] = Conversions(), {}
    yield
    await app[CONVERSIONS].close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_conversions)
    app.router.add_get("/api/convert/cross/paths", paths)
    app.router.add_get("/api/assets/catalog", catalog)
    app.router.add_post("/api/convert/cross", convert)
    app.router.add_get("/api/convert/cross/{job_id}", job)
    app.router.add_route("*", "/api/{rest:.*}", not_here)  # the model-lab routes a server leaves out
    app[ERROR_STYLES]["/api/"] = "detail"  # a prefix: every /api/ route
