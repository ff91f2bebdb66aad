"""Driving an engine in-process, as the worker's loop does: add, step until done, collect."""

from protocol import ChatMessage, Generate, SamplingParams
from workers.gguf_to_hf import as_hf_directory
from workers.settings import DEFAULT_CACHE_DIR, WorkerSettings
from workers.sources import resolve

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_p=1.0)
# a worker's settings with --threads 1, for an engine built in-process with its defaults
ONE_THREAD = WorkerSettings(model="m", source="s", connect="", threads=1)


def transformers_tokenizer(source: str):
    """transformers' own tokenizer of a GGUF (its Hugging Face directory in the cache), for
    references computed apart from the workers' tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(as_hf_directory(resolve(str(source)), DEFAULT_CACHE_DIR, print))


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


JOINING_PROMPTS = ["Write a haiku about the sea.", "hi", "Name three colours.", "Count to five."]
SEEDED = SamplingParams(
    max_tokens=20,
    temperature=1.0,
    top_p=0.95,
    top_k=50,
    seed=1234,
    repetition_penalty=1.1,
    presence_penalty=0.5,
    frequency_penalty=0.5,
    min_p=0.01,
    ignore_eos=True,
)


LONG = SamplingParams(max_tokens=500, temperature=0.0, ignore_eos=True)


def start_two_and_cancel_one(engine):
    """Two long requests, x and y, three steps, then x cancelled: the caller checks what is left."""
    engine.add(chat("x", "Tell me a story.", LONG))
    engine.add(chat("y", "Tell me another story.", LONG))
    for _ in range(3):
        engine.step()
    engine.cancel("x")


def alone_and_joining(engine):
    """Each prompt's greedy text run alone, and run with two joining a batch already running."""
    alone = {}
    for i, p in enumerate(JOINING_PROMPTS):
        texts, _ = run(engine, [chat(str(i), p)])
        alone.update(texts)
    requests = [chat(str(i), p) for i, p in enumerate(JOINING_PROMPTS)]
    batched, _ = run(engine, requests[:2], late=requests[2:])
    return alone, batched
