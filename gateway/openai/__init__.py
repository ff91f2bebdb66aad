"""The OpenAI-compatible routes."""

from gateway.openai.routes import ROUTES, add_routes

__all__ = ["ROUTES", "add_routes"]
