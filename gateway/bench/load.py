"""Driving the load: requests leave at --request-rate (Poisson arrivals; inf: all at once), at most
--concurrency in flight, until --num-requests are sent or --duration has passed. aiohttp with a
connector as large as the concurrency (the openai client collapses under load)."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time

import aiohttp
from tqdm import tqdm

from gateway.bench.requests import Sample, prompts, send
from gateway.bench.settings import BenchSettings
from gateway.bench.stats import Report, report

PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "rerank": "/v1/rerank",
    "transcriptions": "/v1/audio/transcriptions",
}


async def run(s: BenchSettings, samples: list[Sample] | None = None) -> Report:
    """Run the load; `samples` (if given) receives every request's measurements."""
    bodies = prompts(s)
    total = None if s.duration else (s.num_requests or s.concurrency)
    headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    connector = aiohttp.TCPConnector(limit=s.concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    rng = random.Random(s.seed)
    samples = [] if samples is None else samples
    gate = asyncio.Semaphore(s.concurrency)
    bar = tqdm(total=total, unit="req", disable=not s.progress or None, leave=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one(i: int) -> None:
            async with gate:
                samples.append(await send(session, s.url + PATHS[s.endpoint], bodies[i % len(bodies)], s))
            bar.update()

        started = time.perf_counter()
        tasks = []
        for i in itertools.count() if total is None else range(total):
            if s.duration and time.perf_counter() - started >= s.duration:
                break
            if s.duration:  # a soak run keeps no more than the concurrency waiting
                await gate.acquire()
                gate.release()
            tasks.append(asyncio.create_task(one(i)))
            if not math.isinf(s.request_rate):
                await asyncio.sleep(rng.expovariate(s.request_rate))
            else:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - started
    bar.close()
    unit = {"rerank": "documents", "transcriptions": "audio seconds"}.get(s.endpoint, "")
    return report(samples, duration, s.concurrency, s.slos(), unit)
