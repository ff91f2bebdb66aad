"""Running batches: each line through the same generation path as a live request of its endpoint,
at low priority. A batch keeps at most its share of a model's batch slots (`--batch-share` of
max_batch) and sends no new line while live requests wait at the model, so live traffic goes first.
Each answer is committed as it comes; a gateway that restarts resumes its batches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from gateway.batches.store import Store
from gateway.clients import Caller
from gateway.errors import APIError
from gateway.http.body import parse_body
from gateway.http.generation import generate_detached
from gateway.openai.embeddings import embed
from gateway.openai.generation import ChatShape, CompletionShape
from gateway.openai.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.state import ROUTER, SETTINGS

log = structlog.get_logger()
WINDOW_S = 24 * 3600  # completion_window "24h", the one OpenAI accepts
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


async def _chat(app: web.Application, caller: Caller, raw: bytes) -> dict[str, Any]:
    body = parse_body(raw, ChatCompletionRequest)
    settings = app[SETTINGS]
    requests = body.generates(settings.default_max_tokens, settings.max_tokens_cap)
    result = await generate_detached(app, caller, body.model, "chat", requests)
    return ChatShape(body.model, False, bool(body.logprobs)).body(result)


async def _completion(app: web.Application, caller: Caller, raw: bytes) -> dict[str, Any]:
    body = parse_body(raw, CompletionRequest)
    settings = app[SETTINGS]
    requests = body.generates(settings.default_max_tokens, settings.max_tokens_cap)
    echo = [r.prompt for r in requests] if body.echo else None
    result = await generate_detached(app, caller, body.model, "completion", requests)
    return CompletionShape(body.model, False, body.logprobs is not None, echo).body(result)


async def _embedding(app: web.Application, caller: Caller, raw: bytes) -> dict[str, Any]:
    return await embed(app, caller, parse_body(raw, EmbeddingRequest))


Run = Callable[[web.Application, Caller, bytes], Awaitable[dict[str, Any]]]
# the endpoints a batch may name: the schema that checks a line up front, the run that answers it
ENDPOINTS: dict[str, tuple[type, Run]] = {
    "/v1/chat/completions": (ChatCompletionRequest, _chat),
    "/v1/completions": (CompletionRequest, _completion),
    "/v1/embeddings": (EmbeddingRequest, _embedding),
}


def check_lines(text: str, endpoint: str) -> tuple[list[tuple[str, str]], list[dict[str, object]]]:
    """The input file's lines as (custom_id, body JSON), or the errors that fail the batch, each
    naming its line (1-based), as OpenAI's batch `errors` do."""
    schema = ENDPOINTS[endpoint][0]
    lines, errors, seen = [], [], set()

    def error(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": number})

    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            error(number, "invalid_json_line", f"Line {number} is not valid JSON: {exc.msg}.")
            continue
        if not isinstance(item, dict):
            error(number, "invalid_request", f"Line {number} is not a JSON object.")
            continue
        custom_id, body = item.get("custom_id"), item.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            error(number, "missing_custom_id", f"Line {number} has no `custom_id` string.", "custom_id")
        elif custom_id in seen:
            error(
                number, "duplicate_custom_id", f"Line {number} repeats custom_id {custom_id!r}.", "custom_id"
            )
        if item.get("method") != "POST":
            error(number, "invalid_method", f"Line {number}: `method` must be POST.", "method")
        if item.get("url") != endpoint:
            error(
                number,
                "mismatched_url",
                f"Line {number}: `url` must be the batch's endpoint {endpoint}.",
                "url",
            )
        if not isinstance(body, dict):
            error(number, "invalid_request", f"Line {number} has no `body` object.", "body")
            continue
        if body.get("stream"):
            error(number, "invalid_request", f"Line {number}: a batch line cannot stream.", "body.stream")
        try:
            parse_body(json.dumps(body).encode(), schema)
        except APIError as exc:
            error(number, "invalid_request", f"Line {number}: {exc.message}", exc.param)
        if isinstance(custom_id, str) and custom_id:
            seen.add(custom_id)
            lines.append((custom_id, json.dumps(body)))
    if not lines and not errors:
        errors.append(
            {"code": "empty_file", "message": "The input file has no lines.", "param": None, "line": None}
        )
    return lines, errors


def _error(status: int, message: str, code: str) -> dict[str, Any]:
    return APIError(status, message, code).body()


class Runner:
    """Runs the active batches, one task each; resumes them when the gateway starts."""

    def __init__(self, app: web.Application, store: Store) -> None:
        self.app, self.store = app, store
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.callers: dict[str, Caller] = {}
        self._sent: Counter[str] = Counter()  # batch lines at each model, all batches together
        self._turn = asyncio.Condition()

    def resume(self) -> None:
        for batch in self.store.batches(None, 1_000_000):
            if batch["status"] in ACTIVE:
                owner = self.store.owner(str(batch["id"]))
                self.start(str(batch["id"]), Caller(f"batch:{owner}", bool(batch.get("_may_load", True))))

    def start(self, batch_id: str, caller: Caller) -> None:
        self.tasks[batch_id] = asyncio.create_task(self._run(batch_id, caller))
        self.tasks[batch_id].add_done_callback(lambda _: self.tasks.pop(batch_id, None))

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def _update(self, batch_id: str, **fields: object) -> dict[str, Any]:
        batch = self.store.batch(batch_id)
        assert batch is not None
        batch.update(fields)
        self.store.put_batch(batch)
        return batch

    async def _run(self, batch_id: str, caller: Caller) -> None:
        answered = [status for status, _ in self.store.answers(batch_id)]  # after a restart too
        done = sum(status == 200 for status in answered)
        counts = {"total": self.store.line_count(batch_id), "completed": done, "failed": len(answered) - done}
        batch = self._update(batch_id, request_counts=counts)
        if batch["status"] == "validating":
            batch = self._update(batch_id, status="in_progress", in_progress_at=int(time.time()))
        run = ENDPOINTS[str(batch["endpoint"])][1]
        in_flight: set[asyncio.Task[None]] = set()
        try:
            for line, custom_id, body in self.store.pending(batch_id):
                batch = self._update(batch_id)
                if batch["status"] == "cancelling":
                    break
                if time.time() > int(batch["expires_at"]):
                    batch = self._update(batch_id, status="expired", expired_at=int(time.time()))
                    break
                model = str(json.loads(body).get("model", ""))
                await self._wait_for_room(model)
                self._sent[model] += 1
                task = asyncio.create_task(self._line(run, batch_id, caller, model, line, custom_id, body))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight)
        except asyncio.CancelledError:  # the gateway stops: what is not committed runs after it starts
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        self._finish(batch_id)

    def _room(self, model: str) -> bool:
        """A batch line may go to the model: under the batches' share of its slots, and no live
        request waiting there."""
        settings, router = self.app[SETTINGS], self.app[ROUTER]
        state = router.models.get(model)
        if state is None:
            return True  # an unknown model: the line's own answer says so
        workers = list(state.workers.values())
        slots = sum(w.info.max_batch for w in workers) or settings.max_batch
        share = max(1, int(slots * settings.batch_share))
        waiting = sum(w.waiting for w in workers) + state.held
        return self._sent[model] < share and waiting == 0

    async def _wait_for_room(self, model: str) -> None:
        async with self._turn:
            while not self._room(model):
                with contextlib.suppress(TimeoutError):  # live load changes without notice: look again
                    await asyncio.wait_for(self._turn.wait(), 0.2)

    async def _line(
        self, run: Run, batch_id: str, caller: Caller, model: str, line: int, custom_id: str, body: str
    ) -> None:
        request_id = f"batch_req_{uuid.uuid4().hex}"
        try:
            status, answer = 200, await run(self.app, caller, body.encode())
        except APIError as exc:
            status, answer = exc.status, exc.body()
        except TimeoutError:
            status, answer = 504, _error(504, "The request took longer than the server allows.", "timeout")
        except Exception:  # the line fails, not the batch
            log.exception("batch line failed", batch=batch_id, custom_id=custom_id)
            status, answer = 500, _error(500, "The server failed on this line.", "internal_error")
        finally:
            self._sent[model] -= 1
            async with self._turn:
                self._turn.notify_all()
        output = {
            "id": request_id,
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": answer},
            "error": None,
        }
        self.store.answer(batch_id, line, status, output)
        counts = dict(self._update(batch_id)["request_counts"])  # type: ignore[arg-type]
        counts["completed" if status == 200 else "failed"] += 1
        self._update(batch_id, request_counts=counts)

    def _finish(self, batch_id: str) -> None:
        """Write the output and error files and end the batch: completed, cancelled or expired."""
        batch = self._update(batch_id)
        ending = {"cancelling": "cancelled", "expired": "expired"}.get(str(batch["status"]), "completed")
        if ending == "completed":
            batch = self._update(batch_id, status="finalizing", finalizing_at=int(time.time()))
        self.store.drop_pending(batch_id)
        owner = self.store.owner(batch_id)
        answers = self.store.answers(batch_id)
        ok = [answer for status, answer in answers if status == 200]
        failed = [answer for status, answer in answers if status != 200]
        fields: dict[str, object] = {"status": ending, f"{ending}_at": int(time.time())}
        if ok:
            fields["output_file_id"] = self.store.write_file(
                owner, f"{batch_id}_output.jsonl", "batch_output", ok
            )
        if failed:
            fields["error_file_id"] = self.store.write_file(
                owner, f"{batch_id}_error.jsonl", "batch_output", failed
            )
        self._update(batch_id, **fields)
        log.info("batch ended", batch=batch_id, status=ending, completed=len(ok), failed=len(failed))
