"""Where one decode step of the default model goes (issue 24, item 2: what limits the single
stream and the 8 streams): the IR the default worker serves, compiled as the worker compiles it plus
OpenVINO's PERF_COUNT, a 40-token prompt, then one-token steps on its KV state, of one sequence and of
8 side by side (ROWS); per node type, the time OpenVINO's own counters give a step (the median over
STEPS steps after WARM ones, in ROUNDS turns), beside the wall time of the step. Prefill is not in it.

`python -m tests.benchmarks.run --only profile` (also part of `make bench`).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.benchmarks import machine
from tests.benchmarks.faithfulness import stateful_feed
from tests.benchmarks.lookup import served_ir
from workers.settings import WorkerSettings

HEADING = "## One decode step of the default model, by OpenVINO node type"
PROMPT_TOKENS, WARM, STEPS = 40, 10, 50
ROWS = (1, 8)  # sequences in a step: one stream, and the 8 streams of the llama.cpp comparison
ROUNDS = 3  # the row counts take turns: the VM's speed drifts by a third from one minute to the next
SHOWN = 6  # node types listed (by one row's time), the rest summed
Profile = tuple[float, dict[str, tuple[float, int]], float]


@dataclass
class _Samples:
    """Every measured step of one row count: its wall ms, its ms per node type, the output layer's."""

    walls: list[float] = field(default_factory=list)
    by_type: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[str, int] = field(default_factory=dict)
    head: list[float] = field(default_factory=list)

    def profile(self) -> Profile:
        types = {kind: (statistics.median(ms), self.nodes[kind]) for kind, ms in self.by_type.items()}
        ordered = dict(sorted(types.items(), key=lambda item: -item[1][0]))
        return statistics.median(self.walls), ordered, statistics.median(self.head)


def measure(source: str) -> dict[int, Profile]:
    """Per ROWS: the median wall ms of a step; per node type, its ms a step and how many nodes; the
    output layer's ms."""
    import openvino as ov

    from workers.engines.openvino.convert import IR_FILE
    from workers.engines.openvino.device import compile_properties

    settings = WorkerSettings(model="profile", source=source, connect="", engine="openvino")
    properties = {**compile_properties("CPU", settings), "PERF_COUNT": True}
    core = ov.Core()
    model = core.read_model(served_ir(source) / IR_FILE)
    head = model.output("logits").get_node().input_value(0).get_node().get_friendly_name()
    samples = {rows: _Samples() for rows in ROWS}
    for _ in range(ROUNDS):
        for rows in ROWS:
            # compiled each time: a request after another of the same compiled model reports
            # counters that sum to more than its wall time
            request = core.compile_model(model, "CPU", properties).create_infer_request()
            _steps(request, rows, head, samples[rows])
            del request
    return {rows: samples[rows].profile() for rows in ROWS}


def _steps(request: Any, rows: int, head: str, samples: _Samples) -> None:
    """One-token steps of `rows` sequences after a prompt each."""
    request.reset_state()
    request.infer(stateful_feed([100] * PROMPT_TOKENS, 0, rows))
    for i in range(WARM + STEPS):
        started = time.perf_counter()
        request.infer(stateful_feed([100], PROMPT_TOKENS + i, rows))
        if i < WARM:
            continue
        samples.walls.append((time.perf_counter() - started) * 1000)
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1000
            totals[info.node_type] += ms
            counts[info.node_type] += 1
            if info.node_name == head:
                samples.head.append(ms)
        for kind, ms in totals.items():
            samples.by_type[kind].append(ms)
        samples.nodes.update(counts)


def section(profiles: dict[int, Profile], date: str) -> list[str]:
    (wall, types, head), (wall_many, types_many, head_many) = (profiles[rows] for rows in ROWS)
    counted = sum(ms for ms, _ in types.values())
    counted_many = sum(ms for ms, _ in types_many.values())
    shown = list(types)[:SHOWN]

    def share_many(*kinds: str) -> str:
        return f"{sum(types_many.get(kind, (0.0, 0))[0] for kind in kinds) / counted_many:.0%}"

    rest = counted - sum(types[kind][0] for kind in shown)
    residuals = ("ReduceSum", "FullyConnected")
    residuals_ms = sum(types.get(kind, (0.0, 0))[0] for kind in residuals)
    # a step's wall time as a + b x rows: a, what every step pays whatever its rows (above all
    # reading and unpacking the weights), b, what one more sequence adds
    per_row = (wall_many - wall) / (ROWS[1] - ROWS[0])
    fixed = wall - per_row * ROWS[0]
    return [
        HEADING,
        "",
        f"{machine.measured(date)} The IR the default `smollm2-135m-instruct` worker serves (the "
        "GGUF's Q4_1 blocks, each with an integer zero point and the exact residual beside it, the "
        "matmuls of one input fused), compiled as the worker compiles it (f32 math, int8 activations in "
        f"groups of 32, every core) with OpenVINO's `PERF_COUNT`; a {PROMPT_TOKENS}-token "
        f"prompt, then one-token steps on its KV state, of one sequence and of {ROWS[1]} side by side (the "
        "model run directly, as a stateful IR: the worker's pipeline runs the same matmuls beside paged "
        f"attention): the median of {STEPS} steps after {WARM}, {ROUNDS} times, one and {ROWS[1]} in "
        f"turn. Wall time of a step of one sequence: **{wall:.2f} ms** ({1000 / wall:.0f} tokens/s "
        f"before sampling, detokenizing and the path to the client), OpenVINO's counters sum to "
        f"{counted:.2f} ms; of {ROWS[1]}: **{wall_many:.2f} ms** ({ROWS[1] * 1000 / wall_many:.0f} "
        f"tokens/s). With {ROWS[1]} sequences the counters' shares are given, not their times: there "
        "they can sum to more than the wall time.",
        "",
        f"| node type | nodes | ms a step, 1 sequence | share | share, {ROWS[1]} sequences |",
        "|---|---|---|---|---|",
        *(
            f"| {kind} | {types[kind][1]} | {types[kind][0]:.2f} | {types[kind][0] / counted:.0%} | "
            f"{share_many(kind)} |"
            for kind in shown
        ),
        f"| the other {len(types) - len(shown)} types | | {rest:.2f} | {rest / counted:.0%} | "
        f"{share_many(*(kind for kind in types_many if kind not in shown))} |",
        "",
        "Of it, the output layer (49,152 x 576, the GGUF's Q8_0 embedding rows as u8 with zero points): "
        f"{head:.2f} ms a step ({head / counted:.0%}; {head_many / counted_many:.0%} with {ROWS[1]}). The "
        "Q4_1 minimums' residuals (the block sums, ReduceSum, and the small float32 matmul beside each "
        f"compressed one, FullyConnected, q4_1.py): {residuals_ms:.2f} ms "
        f"({share_many(*residuals)} with {ROWS[1]}), besides their share of the Adds and of the time "
        "between nodes (the wall time less the counters).",
        "",
        f"What limits the streams: put as a + b x sequences, a step's wall time is a = {fixed:.2f} ms that "
        f"every step pays whatever its sequences (above all the compressed matmuls reading and unpacking "
        f"the weights) and b = {per_row:.2f} ms more for each sequence (their arithmetic, with int8 "
        f"activations). One stream is bound by a; {ROWS[1]} streams make "
        f"{ROWS[1] * wall / wall_many:.1f}x one stream's tokens/s here, not {ROWS[1]}x.",
        "",
        "`python -m tests.benchmarks.run --only profile` (also part of `make bench`)",
    ]
