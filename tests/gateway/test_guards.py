"""API keys, rate limits, proxies and CORS: the gateway's real middlewares in front of a handler
that only answers, so no model is needed."""

import pytest
import structlog
from aiohttp import web

from gateway.app import guard
from gateway.clients import fingerprint
from gateway.config import Settings
from gateway.ratelimit import RateLimiter


async def answer(request: web.Request) -> web.StreamResponse:
    if request.query.get("stream"):
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: [DONE]\n\n")
        return response
    return web.json_response({"ok": True})


async def client_left(request: web.Request) -> web.StreamResponse:
    # what aiohttp raises when a handler writes to a client that has just gone away
    raise ConnectionResetError("Cannot write to closing transport")


@pytest.fixture
def serve(aiohttp_client):
    async def start(**settings):
        app = web.Application()
        guard(app, Settings(_cli_parse_args=False, **settings))
        app.router.add_get("/health", answer)
        app.router.add_get("/metrics", answer)
        app.router.add_get("/v1/models", answer)
        app.router.add_get("/v1/models/status", answer)
        app.router.add_get("/", answer)
        app.router.add_post("/v1/chat/completions", answer)
        app.router.add_post("/v1/completions", client_left)
        for path in ("/v1/models/load", "/v1/models/unload", "/models/load", "/models/unload"):
            app.router.add_post(path, answer)
        return await aiohttp_client(app)

    return start


async def test_keys_are_required_everywhere_but_health(serve):
    client = await serve(api_keys=["k1", "k2"], rate_limit=0)
    assert (await client.get("/health")).status == 200
    missing = await client.get("/v1/models")
    assert missing.status == 401
    error = (await missing.json())["error"]
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    wrong = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "nope" not in await wrong.text()
    for key in ("k1", "k2"):
        assert (await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})).status == 200
    assert (await client.get("/v1/models", headers={"x-api-key": "k2"})).status == 200


async def test_key_file_and_comma_separated_environment(serve, tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text("# operators' keys\nfrom-file\n\n")
    monkeypatch.setenv("ENGINEHOUSE_API_KEYS", "env-1, env-2")
    client = await serve(api_key_file=keys, rate_limit=0)
    for key in ("from-file", "env-1", "env-2"):
        assert (await client.get("/v1/models", headers={"x-api-key": key})).status == 200
    assert (await client.get("/v1/models", headers={"x-api-key": "# operators' keys"})).status == 401


async def test_a_burst_of_12_serves_10_and_refuses_2_with_retry_after(serve):
    client = await serve()
    answers = [await client.get("/v1/models") for _ in range(12)]
    assert [a.status for a in answers] == [200] * 10 + [429] * 2
    refused = answers[-1]
    assert (await refused.json())["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    first = answers[0].headers
    assert first["x-ratelimit-limit-requests"] == "60" and first["x-ratelimit-remaining-requests"] == "9"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    assert (await client.get("/health")).status == 200  # exempt


async def test_rate_headers_reach_streamed_answers(serve):
    client = await serve()
    response = await client.get("/v1/models?stream=1")
    assert response.status == 200 and response.headers["x-ratelimit-remaining-requests"] == "9"


async def test_two_keys_have_their_own_buckets(serve):
    client = await serve(api_keys=["a", "b"], rate_burst=2)
    a = [(await client.get("/v1/models", headers={"x-api-key": "a"})).status for _ in range(3)]
    b = [(await client.get("/v1/models", headers={"x-api-key": "b"})).status for _ in range(3)]
    assert a == b == [200, 200, 429]


def test_the_bucket_refills_at_one_request_a_second():
    limiter = RateLimiter(per_minute=60, burst=10)
    assert all(limiter.check("c", now=0.0).allowed for _ in range(10))
    refused = limiter.check("c", now=0.0)
    assert not refused.allowed and refused.retry_after_s == 1
    assert not limiter.check("c", now=0.5).allowed
    assert limiter.check("c", now=1.01).allowed
    assert not limiter.check("c", now=1.02).allowed
    assert [limiter.check("c", now=2.0 + i).allowed for i in range(3)] == [True] * 3


def test_idle_buckets_expire_and_the_table_is_capped():
    limiter = RateLimiter(per_minute=60, burst=10, max_buckets=1000)
    for i in range(5000):
        limiter.check(f"client-{i}", now=i * 0.001)
    assert len(limiter) <= 1000
    limiter.check("late", now=100.0)  # every earlier bucket has been full for long: dropped
    assert len(limiter) == 1


async def test_forwarded_for_is_believed_only_from_trusted_proxies(serve):
    spoof = {"X-Forwarded-For": "203.0.113.7"}
    untrusted = await serve(rate_burst=1)
    # the test client connects from 127.0.0.1, not trusted here: the header is ignored
    assert (await untrusted.get("/v1/models", headers=spoof)).status == 200
    assert (await untrusted.get("/v1/models", headers={"X-Forwarded-For": "198.51.100.1"})).status == 429

    trusted = await serve(rate_burst=1, trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"])
    # behind trusted proxies: the rightmost untrusted hop is the client, each with its own bucket
    chain = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.1.2.3"}
    assert (await trusted.get("/v1/models", headers=chain)).status == 200
    assert (await trusted.get("/v1/models", headers={"X-Forwarded-For": "203.0.113.7"})).status == 429
    assert (await trusted.get("/v1/models", headers={"X-Forwarded-For": "198.51.100.1"})).status == 200


async def test_cors_off_by_default_and_preflight_when_allowed(serve):
    closed = await serve(api_keys=["k"])
    r = await closed.get("/health", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in r.headers

    client = await serve(api_keys=["k"], cors_origins=["https://app.example"])
    preflight = await client.options(
        "/v1/chat/completions",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 204  # no key needed for the browser's preflight
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    r = await client.post(
        "/v1/chat/completions", headers={"Origin": "https://app.example", "Authorization": "Bearer k"}
    )
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_metrics_need_the_key_unless_opened(serve):
    closed = await serve(api_keys=["k1"], rate_limit=0)
    assert (await closed.get("/metrics")).status == 401
    assert (await closed.get("/metrics", headers={"x-api-key": "k1"})).status == 200
    opened = await serve(api_keys=["k1"], rate_limit=0, metrics_need_key=False)
    assert (await opened.get("/metrics")).status == 200
    assert (await opened.get("/v1/models")).status == 401  # only the metrics open


async def test_the_request_log_line_names_the_client_and_the_key_fingerprint_never_the_key(serve):
    client = await serve(api_keys=["secret-key-1"], rate_limit=0, trusted_proxies=["127.0.0.1/32"])
    with structlog.testing.capture_logs() as logs:
        await client.get(
            "/v1/models", headers={"x-api-key": "secret-key-1", "X-Forwarded-For": "203.0.113.9"}
        )
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["client"] == "203.0.113.9" and line["key"] == fingerprint("secret-key-1")
    assert line["status"] == 200 and "duration_ms" in line
    assert "secret-key-1" not in repr(logs)


async def test_model_management_needs_an_admin_key(serve):
    client = await serve(api_keys=["user"], admin_api_keys=["boss"], rate_limit=0)
    user, admin = {"Authorization": "Bearer user"}, {"Authorization": "Bearer boss"}
    refused = await client.post("/v1/models/unload", headers=user)
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "permission_denied"
    assert (await client.post("/v1/models/unload", headers=admin)).status == 200
    for headers in (user, admin):  # an admin key passes everywhere an ordinary one does
        assert (await client.get("/v1/models", headers=headers)).status == 200


async def test_admin_keys_from_a_file_and_the_environment(serve, tmp_path, monkeypatch):
    admins = tmp_path / "admins"
    admins.write_text("  # old\nfile-admin\n")
    monkeypatch.setenv("ENGINEHOUSE_ADMIN_API_KEYS", "env-admin")
    client = await serve(admin_api_key_file=admins, rate_limit=0)
    for key in ("file-admin", "env-admin"):
        assert (await client.post("/models/unload", headers={"x-api-key": key})).status == 200
    assert (await client.get("/v1/models", headers={"x-api-key": "# old"})).status == 401
    assert (await client.get("/v1/models")).status == 401


async def test_without_keys_management_stays_open(serve):
    client = await serve(rate_limit=0)
    assert (await client.post("/v1/models/load")).status == 200


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n   # old\n"])
def test_a_key_file_without_a_key_is_an_error(tmp_path, text):
    keys = tmp_path / "keys"
    keys.write_text(text)
    with pytest.raises(ValueError, match="holds no key"):
        Settings(_cli_parse_args=False, api_key_file=keys)


async def test_callers_without_a_key_are_rate_limited_by_address(serve):
    client = await serve(api_keys=["k"], rate_limit=60, rate_burst=2)
    statuses = [(await client.get("/v1/models")).status for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    assert (await client.get("/v1/models", headers={"x-api-key": "k"})).status == 200  # its own bucket


async def test_the_operators_figures_need_an_admin_key_once_there_are_admin_keys(serve):
    with_admins = await serve(api_keys=["user"], admin_api_keys=["boss"], rate_limit=0)
    user, admin = {"Authorization": "Bearer user"}, {"Authorization": "Bearer boss"}
    for path in ("/v1/models/status", "/metrics"):
        refused = await with_admins.get(path, headers=user)
        assert refused.status == 403 and (await refused.json())["error"]["code"] == "permission_denied"
        assert (await with_admins.get(path, headers=admin)).status == 200
    assert (await with_admins.get("/")).status == 200  # a page holds no data: open
    assert (await with_admins.get("/v1/models")).status == 401
    without_admins = await serve(api_keys=["user"], rate_limit=0)
    assert (await without_admins.get("/v1/models/status", headers=user)).status == 200


async def test_a_client_gone_while_written_to_is_a_499_not_an_unhandled_error(serve):
    client = await serve()
    with structlog.testing.capture_logs() as logs:
        response = await client.post("/v1/completions", json={})
    assert response.status == 499
    events = [entry["event"] for entry in logs]
    assert "client went away" in events and "unhandled error" not in events
    assert next(e for e in logs if e["event"] == "request")["status"] == 499
