import asyncio

import pytest

from gateway.errors import APIError
from gateway.stream import Stream
from protocol import Delta, Failed, Generate, SamplingParams


def requests(n):
    return [Generate(f"r{i}", SamplingParams()) for i in range(n)]


async def test_no_first_token_in_time_is_a_504():
    stream = Stream(requests(1), first_token_timeout=0.05)
    with pytest.raises(APIError) as error:
        async for _ in stream:
            pass
    assert error.value.status == 504 and error.value.code == "first_token_timeout"
    assert stream.open == {"r0"}  # still open: leaving router.open cancels it at the worker


async def test_deltas_of_several_prompts_end_each_once_and_the_timeout_covers_only_the_first():
    stream = Stream(requests(2), first_token_timeout=0.2)

    async def feed():
        stream.queue.put_nowait(Delta("r1", "a", 1))
        await asyncio.sleep(0.4)  # later tokens may take longer than the first-token timeout
        stream.queue.put_nowait(Delta("r0", "b", 1, "stop", 3, 1))
        stream.queue.put_nowait(Delta("r1", "", 1, "length", 3, 2))
        stream.queue.put_nowait(Delta("r1", "late", 1))  # after its end: dropped

    task = asyncio.create_task(feed())
    got = [(i, d.text, d.finish_reason) async for i, d in stream]
    await task
    assert got == [(1, "a", None), (0, "b", "stop"), (1, "", "length")]
    assert stream.open == set()


async def test_a_failure_ends_the_stream_with_its_status():
    stream = Stream(requests(1), first_token_timeout=1)
    stream.queue.put_nowait(Failed("r0", 503, "worker_died", "gone"))
    with pytest.raises(APIError) as error:
        async for _ in stream:
            pass
    assert error.value.status == 503 and not stream.open
