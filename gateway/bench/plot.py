"""--plot FILE.png: TTFT and ITL distributions and output tokens per second over the run."""

from __future__ import annotations

from pathlib import Path

from gateway.bench.requests import Sample
from gateway.bench.stats import Report, itl_ms, ttft_ms


def draw(path: Path, samples: list[Sample], result: Report, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "enginehouse bench: --plot needs matplotlib: pip install 'enginehouse[bench]'"
        ) from None
    ok = [x for x in samples if x.ok]
    ttft, itl = ttft_ms(ok), itl_ms(ok)
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    left.hist(ttft or [0], bins=30, color="tab:blue")
    left.set(title="time to first token", xlabel="ms", ylabel="requests")
    middle.hist(itl or [0], bins=50, color="tab:orange")
    middle.set(title="inter-token latency", xlabel="ms", ylabel="events")
    right.plot(range(len(result.timeline_tok_s)), result.timeline_tok_s, marker=".", color="tab:green")
    right.set(title="output tokens per second", xlabel="s since start", ylabel="tok/s")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
