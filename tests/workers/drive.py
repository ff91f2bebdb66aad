"""Driving an engine in-process, as the worker's loop does: add, step until done, collect."""

from protocol import ChatMessage, Generate, SamplingParams

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_p=1.0)


def chat(request_id, text, params=GREEDY):
    return Generate(request_id, params, messages=[ChatMessage("user", text)])


def run(engine, requests, late=(), late_at=3):
    """Run to completion; `late` requests are added after `late_at` steps. Returns texts, ends."""
    texts = {r.request_id: "" for r in [*requests, *late]}
    ends = {}
    for r in requests:
        engine.add(r)
    step = 0
    while engine.has_work():
        if step == late_at:
            for r in late:
                engine.add(r)
        for d in engine.step():
            texts[d.request_id] += d.text
            if d.finish_reason:
                ends[d.request_id] = d
        step += 1
    return texts, ends
