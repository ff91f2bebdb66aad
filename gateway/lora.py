"""LoRA adapters at run time, in the shapes of the servers whose clients use them:

- vLLM's `POST /v1/load_lora_adapter {lora_name, lora_path}` and `POST /v1/unload_lora_adapter
  {lora_name}` (plain-text answers, as vLLM gives them); the same as `POST /v1/lora/load` and
  `/v1/lora/unload` (JSON answers);
- llama.cpp's `GET /lora-adapters` (the list: id, path, scale) and `POST /lora-adapters`
  (`[{id, scale}]`: set scales; 0 turns an adapter off).

An adapter is named by its own model id in requests. On torch and ONNX Runtime it is served by its
base model's workers (`base`: default, the first torch generation model): loading one asks a worker
of the base to load and check it (a PEFT directory that does not fit is refused with the reason); a
worker that lacks it later loads it on its first request. On OpenVINO, whose pipelines fix their
adapters, a worker of the base checks it and then it gets a worker of its own (the base's model
with the adapter applied), started at once; its scale is set then. Loading and unloading need an
admin key once admin keys are set.
"""

from __future__ import annotations

import json
import uuid

from aiohttp import web
from pydantic import Field

from gateway.config import ModelSpec
from gateway.errors import APIError
from gateway.http.body import StrictBody, read_body
from gateway.router import LoRA
from gateway.state import CALLER, ROUTER, SETTINGS, SUPERVISOR
from protocol import Adapter, AdapterLoaded, LoadAdapter, UnloadAdapter

ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


class LoadBody(StrictBody):
    lora_name: str = Field(min_length=1, max_length=200, pattern=ID)
    lora_path: str = Field(min_length=1)
    base: str | None = Field(None, min_length=1)  # the model it adapts (default: the first torch one)
    scale: float = Field(1.0, ge=0.0, le=100.0)


class UnloadBody(StrictBody):
    lora_name: str = Field(min_length=1)


class Scale(StrictBody):
    id: int = Field(ge=0)
    scale: float = Field(ge=0.0, le=100.0)


async def _load(request: web.Request) -> tuple[str, AdapterLoaded]:
    body = await read_body(request, LoadBody)
    router = request.app[ROUTER]
    if body.lora_name in router.adapters:
        raise APIError(400, f"The LoRA adapter '{body.lora_name}' has already been loaded.", "adapter_exists")
    if body.lora_name in router.models:
        raise APIError(
            400, f"`{body.lora_name}` is a model's id; name the adapter otherwise.", "invalid_value"
        )
    base = body.base or _default_base(request)
    if base in router.adapters:
        raise APIError(400, f"`{base}` is an adapter; an adapter's base is a model.", "invalid_value", "base")
    router.model(base, "base")
    adapter = Adapter(body.lora_name, body.lora_path, body.scale)
    answer = await router.ask(base, "chat", LoadAdapter(uuid.uuid4().hex, adapter), request[CALLER])
    assert isinstance(answer, AdapterLoaded)
    supervisor = request.app[SUPERVISOR]
    spec = supervisor.specs.get(base)
    own_worker = spec is not None and spec.engine == "openvino"
    router.adapters[body.lora_name] = LoRA(base, adapter, own_worker)
    if own_worker:
        assert spec is not None
        declared = ModelSpec(id=adapter.name, base=base, adapter=adapter.path, scale=adapter.scale)
        supervisor.add(declared.adapting(spec))
        try:
            await router.wait_ready(adapter.name)
        except APIError:
            del router.adapters[adapter.name]
            await supervisor.forget(adapter.name)
            raise
    return base, answer


def _default_base(request: web.Request) -> str:
    found = next(
        (m.id for m in request.app[SETTINGS].models() if m.engine == "torch" and m.task == "generate"), None
    )
    if found is None:
        raise APIError(
            400, "Name the model the adapter is for: `base` (a torch generation model).", "invalid_value"
        )
    return found


async def _unload(request: web.Request, name: str) -> str:
    router = request.app[ROUTER]
    if name not in router.adapters:
        raise APIError(404, f"The LoRA adapter '{name}' cannot be found.", "adapter_not_found", "lora_name")
    base, _, own_worker = router.adapters.pop(name)
    if own_worker:
        await request.app[SUPERVISOR].forget(name)
    else:
        router.tell_workers(base, UnloadAdapter(name))
    return base


async def load_vllm(request: web.Request) -> web.Response:
    _, answer = await _load(request)
    return web.Response(text=f"Success: LoRA adapter '{answer.name}' added successfully.")


async def unload_vllm(request: web.Request) -> web.Response:
    name = (await read_body(request, UnloadBody)).lora_name
    await _unload(request, name)
    return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")


async def load_json(request: web.Request) -> web.Response:
    base, answer = await _load(request)
    view = {"lora_name": answer.name, "base": base, "rank": answer.rank, "target_modules": answer.targets}
    return web.json_response({"status": "loaded", **view})


async def unload_json(request: web.Request) -> web.Response:
    name = (await read_body(request, UnloadBody)).lora_name
    base = await _unload(request, name)
    return web.json_response({"status": "unloaded", "lora_name": name, "base": base})


async def list_llamacpp(request: web.Request) -> web.Response:
    adapters = request.app[ROUTER].adapters
    return web.json_response(
        [
            {"id": i, "name": name, "path": lora.adapter.path, "scale": lora.adapter.scale, "base": lora.base}
            for i, (name, lora) in enumerate(adapters.items())
        ]
    )


async def scales_llamacpp(request: web.Request) -> web.Response:
    """llama.cpp's `[{id, scale}]`: new scales for the adapters by their place in the list."""
    raw = await request.read()
    try:
        items = [Scale.model_validate(item) for item in json.loads(raw)]
    except (ValueError, TypeError) as exc:
        raise APIError(400, f"Send a JSON list of {{id, scale}}: {exc}", "invalid_body") from None
    adapters = request.app[ROUTER].adapters
    names = list(adapters)
    for item in items:
        if item.id >= len(names):
            raise APIError(
                400, f"There is no adapter {item.id} (there are {len(names)}).", "invalid_value", "id"
            )
        lora = adapters[names[item.id]]
        if lora.own_worker and item.scale != lora.adapter.scale:
            raise APIError(
                400,
                f"`{lora.adapter.name}` runs on OpenVINO, whose pipeline fixes its adapter's scale: "
                "unload it and load it again with the scale.",
                "invalid_value",
                "scale",
            )
    for item in items:  # requests after this one carry the new scale; the workers apply it then
        lora = adapters[names[item.id]]
        adapter = Adapter(lora.adapter.name, lora.adapter.path, item.scale)
        adapters[names[item.id]] = lora._replace(adapter=adapter)
    return web.json_response({"success": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/load_lora_adapter", load_vllm)
    app.router.add_post("/v1/unload_lora_adapter", unload_vllm)
    app.router.add_post("/v1/lora/load", load_json)
    app.router.add_post("/v1/lora/unload", unload_json)
    app.router.add_get("/lora-adapters", list_llamacpp)
    app.router.add_post("/lora-adapters", scales_llamacpp)
