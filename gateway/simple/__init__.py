"""Routes in the shapes of the simple FastAPI-style server our users ran before: /generate, /chat,
/generate/batch, /models/*, /system/info. Their errors are `{"detail": message}`."""

from __future__ import annotations

from aiohttp import web

from gateway.http.openapi import Route
from gateway.simple import generate, models
from gateway.state import DETAIL_PATHS

ROUTES = [
    Route("/generate", "Text generation (simple REST)", generate.GenerateBody, "optional", detail=True),
    Route("/chat", "Chat (simple REST)", generate.ChatBody, "optional", detail=True),
    Route(
        "/generate/batch", "Prompts generated together (simple REST)", generate.BatchBody, "optional", True
    ),
    Route("/models/current", "The default model and the loaded ones (simple REST)", detail=True),
    Route("/models/available", "Every model and its state (simple REST)", detail=True),
    Route("/system/info", "CPU, memory, devices, loaded models (simple REST)", detail=True),
]


def add_routes(app: web.Application) -> None:
    routes = [
        web.post("/generate", generate.generate),
        web.post("/chat", generate.chat),
        web.post("/generate/batch", generate.generate_batch),
        web.post("/models/load", models.load),
        web.get("/models/current", models.current),
        web.get("/models/available", models.available),
        web.post("/models/unload", models.unload),
        web.get("/system/info", models.system_info),
    ]
    app.router.add_routes(routes)
    app[DETAIL_PATHS] = frozenset(route.path for route in routes)
