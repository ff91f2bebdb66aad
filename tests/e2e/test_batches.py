"""The Files and Batches APIs through the real `openai` client: batches of chat and embedding lines
run to completion on the real models; a gateway killed mid-batch resumes it with every custom_id
answered once and the lines done before not run again; bad lines, a wrong endpoint, another key's
file and a cancel mid-run."""

import io
import json
import signal
import sqlite3
import time

import httpx
import openai
import psutil
import pytest

from tests.server import start_server, stop_server

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_lines(n: int, model: str = CHAT, max_tokens: int = 8, prefix: str = "chat") -> list[dict]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"Count from {i} to {i + 3}."}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            },
        }
        for i in range(n)
    ]


def wait_until_done(client: openai.OpenAI, batch_id: str, timeout: float = 400):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} still {batch.status}: {batch.request_counts}")


def output_lines(client: openai.OpenAI, file_id: str) -> list[dict]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_chat_and_embedding_batches_complete_with_every_custom_id_once(client):
    embed_lines = [
        {"custom_id": f"embed-{i}", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": EMBED, "input": f"sentence number {i}"}}
        for i in range(50)
    ]  # fmt: skip
    chat_file = client.files.create(file=("chat.jsonl", io.BytesIO(jsonl(chat_lines(200)))), purpose="batch")
    embed_file = client.files.create(file=("embed.jsonl", io.BytesIO(jsonl(embed_lines))), purpose="batch")
    assert chat_file.purpose == "batch" and chat_file.bytes == len(jsonl(chat_lines(200)))
    assert client.files.retrieve(chat_file.id).filename == "chat.jsonl"
    chat = client.batches.create(
        input_file_id=chat_file.id, endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"job": "nightly"},
    )  # fmt: skip
    embed = client.batches.create(
        input_file_id=embed_file.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert chat.status in ("validating", "in_progress") and chat.metadata == {"job": "nightly"}
    chat, embed = wait_until_done(client, chat.id), wait_until_done(client, embed.id)
    assert chat.status == embed.status == "completed", (chat, embed)
    assert (chat.request_counts.total, chat.request_counts.completed, chat.request_counts.failed) == (
        200,
        200,
        0,
    )
    assert embed.request_counts.completed == 50 and embed.error_file_id is None
    answers = output_lines(client, chat.output_file_id)
    assert sorted(a["custom_id"] for a in answers) == sorted(f"chat-{i}" for i in range(200))
    for answer in answers:
        body = answer["response"]["body"]
        assert answer["response"]["status_code"] == 200 and answer["error"] is None
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] == 8
        assert body["choices"][0]["message"]["content"]
    vectors = output_lines(client, embed.output_file_id)
    assert sorted(v["custom_id"] for v in vectors) == sorted(f"embed-{i}" for i in range(50))
    assert all(len(v["response"]["body"]["data"][0]["embedding"]) == 384 for v in vectors)
    assert chat.id in {b.id for b in client.batches.list()}
    output = client.files.retrieve(chat.output_file_id)
    assert output.purpose == "batch_output"
    assert client.files.delete(chat_file.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(chat_file.id)


def exited(process: psutil.Process) -> bool:
    """Exited (a zombie too: an orphan's new parent may not reap it)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_gateway_killed_mid_batch_resumes_it_and_answers_each_line_once(tmp_path):
    """On the test engine (the gateway's paths are what is tested): each line 4,000 tokens."""
    state, models = tmp_path / "state", tmp_path / "models.toml"
    models.write_text('[echo]\nsource = "none"\nengine = "test"\n')
    first = start_server("--models", str(models), "--state-dir", str(state))
    client = openai.OpenAI(base_url=f"{first.url}/v1", api_key="unused", max_retries=0)
    lines = chat_lines(60, model="echo", max_tokens=4000)
    uploaded = client.files.create(file=("chat.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while client.batches.retrieve(batch.id).request_counts.completed < 10:
        time.sleep(0.05)
    worker = psutil.Process(first.status("echo")["replicas"][0]["pid"])
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    # its worker, streaming into a queue no one reads any more, sees its parent gone and exits
    deadline = time.monotonic() + 15
    while not exited(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exited(worker), "the worker outlived its gateway"
    with sqlite3.connect(state / "batches.sqlite3") as db:
        done = db.execute("SELECT COUNT(*) FROM lines WHERE status_code IS NOT NULL").fetchone()[0]
    assert 10 <= done < 60
    second = start_server("--models", str(models), "--state-dir", str(state))
    try:
        client = openai.OpenAI(base_url=f"{second.url}/v1", api_key="unused", max_retries=0)
        ended = wait_until_done(client, batch.id)
        assert ended.status == "completed" and ended.request_counts.completed == 60
        answers = output_lines(client, ended.output_file_id)
        assert sorted(a["custom_id"] for a in answers) == sorted(line["custom_id"] for line in lines)
        # the lines answered before the kill were not run again: this gateway generated the rest only
        assert second.status("echo")["completion_tokens"] == 4000 * (60 - done)
    finally:
        stop_server(second)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """The gateway's own paths only: the test engine, two keys."""
    models = tmp_path_factory.mktemp("batches") / "models.toml"
    models.write_text('[echo]\nsource = "none"\nengine = "test"\n')
    state = tmp_path_factory.mktemp("state")
    keys = ["--api-key", "a", "--api-key", "b"]
    server = start_server(
        "--models", str(models), *keys, "--state-dir", str(state), "--batch-key-lines", "300", key="a"
    )
    yield server
    stop_server(server)


def keyed_client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_bad_lines_fail_the_batch_naming_each_line(keyed):
    client = keyed_client(keyed, "a")
    good = chat_lines(1, model="echo")[0]
    bad = (
        jsonl([good])
        + b"{not json\n"
        + jsonl([{**good, "custom_id": "x", "url": "/v1/completions"}])
        + jsonl([good])  # its custom_id again
        + jsonl([{**good, "custom_id": "y", "body": {"model": "echo", "messages": [], "max_tokens": 4}}])
    )
    uploaded = client.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "failed" and batch.failed_at
    found = {(e.line, e.code) for e in batch.errors.data}
    assert {
        (2, "invalid_json_line"),
        (3, "mismatched_url"),
        (4, "duplicate_custom_id"),
        (5, "invalid_request"),
    } <= found
    messages = {e.line: e.message for e in batch.errors.data}
    assert "messages" in messages[5]


def test_a_wrong_endpoint_and_another_keys_file_or_batch(keyed):
    a, b = keyed_client(keyed, "a"), keyed_client(keyed, "b")
    uploaded = a.files.create(
        file=("ok.jsonl", io.BytesIO(jsonl(chat_lines(2, model="echo")))), purpose="batch"
    )
    with pytest.raises(openai.BadRequestError) as error:
        a.batches.create(input_file_id=uploaded.id, endpoint="/v1/audio/speech", completion_window="24h")
    assert error.value.body["param"] == "endpoint"
    with pytest.raises(openai.NotFoundError):
        b.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        b.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        b.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert uploaded.id not in {f.id for f in b.files.list()}
    batch = a.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    with pytest.raises(openai.NotFoundError):
        b.batches.retrieve(batch.id)
    assert wait_until_done(a, batch.id).status == "completed"
    no_file = httpx.post(
        f"{keyed.url}/v1/files", headers={"Authorization": "Bearer a"}, data={"purpose": "batch"}
    )
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    with pytest.raises(openai.BadRequestError):
        a.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")


def test_cancel_mid_run_keeps_what_completed(keyed):
    client = keyed_client(keyed, "a")
    lines = chat_lines(200, model="echo", max_tokens=20000)
    uploaded = client.files.create(file=("long.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while client.batches.retrieve(batch.id).request_counts.completed < 3:
        time.sleep(0.1)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    ended = wait_until_done(client, batch.id, timeout=120)
    assert ended.status == "cancelled" and ended.cancelled_at
    completed = ended.request_counts.completed
    assert 3 <= completed < 200
    answers = output_lines(client, ended.output_file_id)
    assert len(answers) == completed and len({a["custom_id"] for a in answers}) == completed
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: harmless
    failed = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert failed.status == "failed"  # its lines name another url
    with pytest.raises(openai.BadRequestError):  # an ended batch cannot be cancelled
        client.batches.cancel(failed.id)


def test_a_keys_queued_lines_are_bounded(keyed):
    client = keyed_client(keyed, "b")
    uploaded = client.files.create(
        file=("many.jsonl", io.BytesIO(jsonl(chat_lines(301, model="echo")))), purpose="batch"
    )
    with pytest.raises(openai.RateLimitError) as error:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert error.value.body["code"] == "batch_quota_exceeded"
