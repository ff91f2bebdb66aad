"""Where one decode step of the default model goes (issue 24, item 2: what limits the single
stream): the IR the default worker serves, compiled as the worker compiles it plus OpenVINO's
PERF_COUNT, a 40-token prompt, then single-token steps on its KV state; per node type, the time
OpenVINO's own counters give a step (the median over STEPS steps after WARM ones), beside the wall
time of the step. Prefill is not in it.

`python -m tests.benchmarks.run --only profile` (also part of `make bench`).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from tests.benchmarks import machine
from tests.benchmarks.faithfulness import stateful_feed
from tests.benchmarks.lookup import served_ir
from workers.settings import WorkerSettings

HEADING = "## One decode step of the default model, by OpenVINO node type"
PROMPT_TOKENS, WARM, STEPS = 40, 10, 50
SHOWN = 6  # node types listed, the rest summed
Profile = tuple[float, dict[str, tuple[float, int]], float]


def measure(source: str) -> Profile:
    """The median wall ms of a step; per node type, its ms a step and how many nodes; the output
    layer's ms."""
    import openvino as ov

    from workers.engines.openvino.convert import IR_FILE
    from workers.engines.openvino.device import compile_properties

    settings = WorkerSettings(model="profile", source=source, connect="", engine="openvino")
    properties = {**compile_properties("CPU", settings), "PERF_COUNT": True}
    core = ov.Core()
    model = core.read_model(served_ir(source) / IR_FILE)
    head = model.output("logits").get_node().input_value(0).get_node().get_friendly_name()
    request = core.compile_model(model, "CPU", properties).create_infer_request()
    request.reset_state()

    def step(start: int, length: int) -> None:
        request.infer(stateful_feed([100] * length, start))

    step(0, PROMPT_TOKENS)
    walls: list[float] = []
    by_type: dict[str, list[float]] = defaultdict(list)
    nodes: dict[str, int] = defaultdict(int)
    head_ms: list[float] = []
    for i in range(WARM + STEPS):
        started = time.perf_counter()
        step(PROMPT_TOKENS + i, 1)
        if i < WARM:
            continue
        walls.append((time.perf_counter() - started) * 1000)
        totals: dict[str, float] = defaultdict(float)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1000
            totals[info.node_type] += ms
            nodes[info.node_type] += i == WARM  # counted in one step
            if info.node_name == head:
                head_ms.append(ms)
        for kind, ms in totals.items():
            by_type[kind].append(ms)
    types = {kind: (statistics.median(values), nodes[kind]) for kind, values in by_type.items()}
    ordered = dict(sorted(types.items(), key=lambda item: -item[1][0]))
    return statistics.median(walls), ordered, statistics.median(head_ms) if head_ms else float("nan")


def section(profile: Profile, date: str) -> list[str]:
    wall, types, head = profile
    counted = sum(ms for ms, _ in types.values())
    shown = list(types.items())[:SHOWN]
    rest = counted - sum(ms for _, (ms, _) in shown)
    lines = [
        HEADING,
        "",
        f"{machine.measured(date)} The IR the default `smollm2-135m-instruct` worker serves (the "
        "GGUF's Q4_1 blocks, each with an integer zero point and the exact residual beside it, the "
        "matmuls of one input fused), compiled as the worker compiles it (f32 math, int8 activations in "
        f"groups of 32, every core) with OpenVINO's `PERF_COUNT`; a {PROMPT_TOKENS}-token "
        f"prompt, then single-token steps on its KV state (the model run directly, as a stateful IR: the "
        f"worker's pipeline runs the same matmuls beside paged attention): the median of {STEPS} steps after "
        f"{WARM}. Wall time of a step: **{wall:.2f} ms** ({1000 / wall:.0f} tokens/s before sampling, "
        f"detokenizing and the path to the client); OpenVINO's counters sum to {counted:.2f} ms.",
        "",
        "| node type | nodes | ms a step | share |",
        "|---|---|---|---|",
    ]
    lines += [f"| {kind} | {n} | {ms:.2f} | {ms / counted:.0%} |" for kind, (ms, n) in shown]
    lines += [
        f"| the other {len(types) - len(shown)} types | | {rest:.2f} | {rest / counted:.0%} |",
        "",
        f"Of it, the output layer (49,152 x 576, the GGUF's Q8_0 embedding rows as u8 with zero points): "
        f"{head:.2f} ms a step. The Q4_1 minimums' residuals (the block sums, ReduceSum, and the small "
        "float32 matmul beside each compressed one, FullyConnected, q4_1.py): "
        f"{sum(types.get(kind, (0.0, 0))[0] for kind in ('ReduceSum', 'FullyConnected')):.2f} ms, "
        "besides their share of the Adds and of the time between nodes (the wall time less the counters).",
        "",
        "`python -m tests.benchmarks.run --only profile` (also part of `make bench`)",
    ]
    return lines
