"""Conversions over HTTP, as jobs: each runs `python -m workers.convert` (the same converter as
`enginehouse convert`) in a process of its own, one at a time, and keeps its progress lines and the
model source it made. Jobs live as long as the gateway; the converted models stay in the cache."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

import structlog

from gateway.errors import APIError

log = structlog.get_logger()
MAX_LINES = 500  # progress lines kept per job (the last ones)
MAX_PENDING = 8  # jobs queued or running at once; more is a 429
KEEP_FINISHED = 100

State = Literal["queued", "running", "completed", "failed", "cancelled"]


@dataclass
class Job:
    id: str
    arguments: list[str]  # for workers.convert
    state: State = "queued"
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=MAX_LINES))
    result: str | None = None  # the converted model: a source for a models file or the worker
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def view(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "convert.job",
            "state": self.state,
            "arguments": self.arguments,
            "progress": list(self.lines),
            "result": self.result,
            "error": self.error,
            "created": int(self.created),
            "finished": None if self.finished is None else int(self.finished),
        }


class Conversions:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._turn = asyncio.Lock()  # a conversion takes the CPU: one at a time
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, arguments: list[str]) -> Job:
        pending = sum(job.finished is None for job in self.jobs.values())
        if pending >= MAX_PENDING:
            raise APIError(
                429, f"{pending} conversions are queued or running; try again later.", "too_many_jobs"
            )
        self._forget_old()
        job = Job(f"convjob-{uuid.uuid4().hex}", arguments)
        self.jobs[job.id] = job
        task = asyncio.create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise APIError(404, f"No conversion job {job_id!r}.", "not_found", "job_id")
        return job

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        done = [job for job in self.jobs.values() if job.finished is not None]
        for job in sorted(done, key=lambda j: j.created)[: max(0, len(done) - KEEP_FINISHED)]:
            del self.jobs[job.id]

    async def _run(self, job: Job) -> None:
        async with self._turn:
            job.state = "running"
            log.info("conversion started", job=job.id, arguments=job.arguments)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "workers.convert",
                *job.arguments,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "TQDM_DISABLE": "1"},
            )
            try:
                assert process.stdout is not None
                async for raw in process.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    if line.startswith("result: "):
                        job.result = line.removeprefix("result: ")
                    elif line:
                        job.lines.append(line)
                code = await process.wait()
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                job.state, job.error, job.finished = "cancelled", "the gateway stopped", time.time()
                raise
            job.finished = time.time()
            if code == 0 and job.result:
                job.state = "completed"
            else:
                job.state = "failed"
                job.error = job.lines[-1] if job.lines else f"the converter exited with status {code}"
            log.info("conversion ended", job=job.id, state=job.state, result=job.result, error=job.error)
