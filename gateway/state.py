"""Typed keys for what the app holds."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.clients import Caller, Network, parse_networks
from gateway.config import Settings
from gateway.errors import Style
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter, SharedRateLimiter
from gateway.router import Router
from gateway.supervisor import Supervisor
from gateway.systemd import Notifier
from gateway.workforce import Workforce


@dataclass(frozen=True)
class Guards:
    """Who may call and how often, built once from the settings."""

    keys: list[str]  # every accepted key, the admin keys among them
    admin_keys: list[str]
    limiter: RateLimiter | SharedRateLimiter | None
    trusted_proxies: list[Network]
    cors_origins: list[str]
    metrics_need_key: bool
    keys_may_load: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Guards:
        limited = settings.rate_limit > 0 and settings.rate_burst > 0
        limiter: RateLimiter | SharedRateLimiter | None = None
        if limited:
            limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
            if settings.redis_url:
                limiter = SharedRateLimiter(settings.redis_url, limiter, settings.redis_fail_open)
        return cls(
            keys=settings.keys(),
            admin_keys=settings.admin_keys(),
            limiter=limiter,
            trusted_proxies=parse_networks(settings.trusted_proxies),
            cors_origins=settings.cors_origins,
            metrics_need_key=settings.metrics_need_key,
            keys_may_load=settings.keys_may_load,
        )


SETTINGS = web.AppKey("settings", Settings)
GUARDS = web.AppKey("guards", Guards)
ROUTER = web.AppKey("router", Router)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
WORKFORCE = web.AppKey("workforce", Workforce)  # the two above, stopped with the app
METRICS = web.AppKey("metrics", Metrics)
NOTIFIER = web.AppKey("notifier", Notifier)
CALLER = web.RequestKey("caller", Caller)  # whose request: set before any handler runs
# routes whose errors are not in OpenAI's shape, and theirs (the simple REST server's, Anthropic's)
ERROR_STYLES = web.AppKey("error_styles", dict[str, Style])
