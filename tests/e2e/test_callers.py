"""Callers sharing one server for real: one key's flood does not lock another key out, and only
admin keys manage models (and, with --no-keys-may-load, load them)."""

import asyncio
import time

import anthropic
import httpx
import pytest

from tests.server import start_server, stop_server

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def keyed():
    server = start_server(
        "--no-engine-variants",
        "--api-key",
        "key-a",
        "--api-key",
        "key-b",
        "--admin-api-key",
        "admin",
        "--no-keys-may-load",
        key="admin",
    )
    yield server
    stop_server(server)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_one_keys_300_prompts_leave_room_for_another_keys_request(keyed):
    flood = {
        "model": CHAT,
        "prompt": ["Once upon a time"] * 60,
        "max_tokens": 200,
        "ignore_eos": True,
    }

    async def run() -> float:
        async with httpx.AsyncClient(base_url=keyed.url, timeout=600) as client:
            floods = [
                asyncio.create_task(client.post("/v1/completions", json=flood, headers=auth("key-a")))
                for _ in range(5)
            ]
            deadline = time.monotonic() + 30
            while keyed.status(CHAT)["in_flight"] < 300:  # all 300 admitted, most of them waiting
                assert time.monotonic() < deadline and not any(f.done() for f in floods)
                await asyncio.sleep(0.1)
            started = time.monotonic()
            reply = await client.post(
                "/v1/chat/completions",
                json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
                headers=auth("key-b"),
            )
            took = time.monotonic() - started
            assert reply.status_code == 200, reply.text
            assert not any(f.done() for f in floods)  # key a's work is still going on
            for task in floods:
                task.cancel()
            await asyncio.gather(*floods, return_exceptions=True)
            return took

    took = asyncio.run(run())
    assert took < 30, f"key b waited {took:.1f} s behind key a's prompts"
    deadline = time.monotonic() + 10  # key a's closed requests are cancelled at the worker
    while keyed.status(CHAT)["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_only_admin_keys_unload_and_with_keys_may_load_false_only_they_load(keyed):
    unload = {"name": EMBED}
    refused = httpx.post(f"{keyed.url}/v1/models/unload", json=unload, headers=auth("key-a"), timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert keyed.status(EMBED)["state"] == "ready"
    done = httpx.post(f"{keyed.url}/v1/models/unload", json=unload, headers=auth("admin"), timeout=60)
    assert done.status_code == 200 and done.json()["state"] == "registered"
    embed = {"model": EMBED, "input": "hello"}
    denied = httpx.post(f"{keyed.url}/v1/embeddings", json=embed, headers=auth("key-b"), timeout=30)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert keyed.status(EMBED)["state"] == "registered"
    loaded = httpx.post(f"{keyed.url}/v1/embeddings", json=embed, headers=auth("admin"), timeout=120)
    assert loaded.status_code == 200 and len(loaded.json()["data"][0]["embedding"]) == 384
    answered = httpx.post(f"{keyed.url}/v1/embeddings", json=embed, headers=auth("key-b"), timeout=30)
    assert answered.status_code == 200  # loaded: an ordinary key uses it


def test_without_a_key_the_messages_api_answers_401_in_anthropics_shape(keyed):
    claude = anthropic.Anthropic(base_url=keyed.url, api_key="not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as error:
        claude.messages.create(model=CHAT, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 401 and error.value.body["error"]["type"] == "authentication_error"
    with_key = anthropic.Anthropic(base_url=keyed.url, api_key="key-a", max_retries=0)  # as x-api-key
    assert with_key.messages.create(
        model=CHAT, max_tokens=2, messages=[{"role": "user", "content": "hi"}]
    ).content


def test_conversion_jobs_need_an_admin_key_and_discovery_does_not(keyed):
    job = {"source": "smollm2-135m-instruct", "to": "openvino"}
    refused = httpx.post(f"{keyed.url}/api/convert/cross", json=job, headers=auth("key-a"), timeout=30)
    assert refused.status_code == 403 and "admin key" in refused.json()["detail"]
    unknown = httpx.get(f"{keyed.url}/api/convert/cross/convjob-x", headers=auth("key-a"), timeout=30)
    assert unknown.status_code == 403
    paths = httpx.get(f"{keyed.url}/api/convert/cross/paths", headers=auth("key-a"), timeout=60)
    assert paths.status_code == 200 and paths.json()["paths"]
    assert httpx.get(f"{keyed.url}/api/convert/cross/paths", timeout=30).status_code == 401
