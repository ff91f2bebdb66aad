"""Routes in the shapes of the simple FastAPI-style server our users ran before: /generate, /chat,
/generate/batch, /models/*, /system/info. Their errors are `{"detail": message}`."""

from __future__ import annotations

from aiohttp import web

from gateway.http.openapi import Route
from gateway.simple import generate, models
from gateway.state import ERROR_STYLES

ROUTES = [
    Route("/generate", "Text generation (simple REST)", generate.GenerateBody, "optional", errors="detail"),
    Route("/chat", "Chat (simple REST)", generate.ChatBody, "optional", errors="detail"),
    Route(
        "/generate/batch",
        "Prompts generated together (simple REST)",
        generate.BatchBody,
        "optional",
        errors="detail",
    ),
    Route("/models/current", "The default model and the loaded ones (simple REST)", errors="detail"),
    Route("/models/available", "Every model and its state (simple REST)", errors="detail"),
    Route("/system/info", "CPU, memory, devices, loaded models (simple REST)", errors="detail"),
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
    app[ERROR_STYLES].update((route.path, "detail") for route in routes)
