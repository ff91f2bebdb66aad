"""Typed keys for what the app holds."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Settings
from gateway.router import Router
from gateway.supervisor import Supervisor

SETTINGS = web.AppKey("settings", Settings)
ROUTER = web.AppKey("router", Router)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
