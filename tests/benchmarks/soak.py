"""`make soak`: the default server (as `make run` serves it) under `enginehouse bench --duration 30m
--concurrency 8`, with the resident memory of the gateway and each worker sampled every minute.
Written to docs/reliability.md (a table, the command) and docs/bench/soak-rss.png. A soak, not a
test: it is not in `make test`; it reports what held (0 errors, RSS flat within 5% after the first
5 minutes) and exits 1 when something did not.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks import machine
from tests.server import start_server, stop_server

WARMUP_MIN = 5  # RSS is compared from here on
FLAT = 0.05


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """The proportional set: each resident page divided by the processes that map it (the shared
    libraries both workers load counted once between them, not in each RSS)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def processes(server) -> dict[str, int]:
    """The gateway and each worker of the loaded models, by name."""
    found = {"gateway": server.process.pid}
    for model in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        for replica in server.status(model)["replicas"]:
            found[model] = replica["pid"]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("docs/reliability.md"))
    args = parser.parse_args()
    server = start_server()
    report_file = Path(tempfile.mkdtemp()) / "soak.json"
    bench = [
        sys.executable,
        "-m",
        "gateway",
        "bench",
        "--url",
        server.url,
        "--duration",
        f"{args.minutes:g}m",
        "--concurrency",
        str(args.concurrency),
        "--json",
        str(report_file),
        "--no-progress",
    ]
    try:
        pids = processes(server)
        samples: list[tuple[float, dict[str, float]]] = []
        started = time.monotonic()
        load = subprocess.Popen(bench)
        while load.poll() is None:
            samples.append(((time.monotonic() - started) / 60, {n: rss_mb(p) for n, p in pids.items()}))
            time.sleep(min(60.0, args.minutes * 60 / 10))
            if processes(server) != pids:
                print("soak: a process was replaced during the run", file=sys.stderr)
                pids = processes(server)
        samples.append(((time.monotonic() - started) / 60, {n: rss_mb(p) for n, p in pids.items()}))
        report = json.loads(report_file.read_text())
    finally:
        stop_server(server)
    return write(args, report, samples)


def drift(samples: list[tuple[float, dict[str, float]]], name: str) -> float:
    """The largest change of the process's RSS after the warm-up, relative to its value then."""
    after = [rss[name] for minute, rss in samples if minute >= WARMUP_MIN] or [samples[-1][1][name]]
    return max(abs(v - after[0]) for v in after) / after[0]


def write(args, report: dict, samples: list[tuple[float, dict[str, float]]]) -> int:
    names = list(samples[0][1])
    drifts = {n: drift(samples, n) for n in names}
    held = report["failed"] == 0 and all(d <= FLAT for d in drifts.values())
    plot = args.out.parent / "bench" / "soak-rss.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    _draw(plot, samples, names)
    command = f"enginehouse bench --duration {args.minutes:g}m --concurrency {args.concurrency}"
    rows = "\n".join(
        f"| {minute:.1f} | " + " | ".join(f"{rss[n]:.0f}" for n in names) + f" | {sum(rss.values()):.0f} |"
        for minute, rss in samples
    )
    errors = ", ".join(f"{k} x{v}" for k, v in report.get("errors", {}).items()) or "none"
    text = (
        f"""# Reliability

## Soak: {args.minutes:g} minutes at concurrency {args.concurrency}

`make soak` ({report["duration_s"] / 60:.1f} minutes). {machine.measured(datetime.date.today())} The default
server as `make run` serves it, and against it

    {command}

with the resident memory (RSS) of the gateway and of each worker sampled about every minute.

| | |
|---|---|
| requests completed | {report["completed"]} |
| requests failed | {report["failed"]} (errors: {errors}) |
| output tokens | {report["output_tokens"]} ({report["output_tok_s"]:.0f} tok/s) |
| TTFT ms, median / p99 | {report["ttft_ms"]["median"]:.0f} / {report["ttft_ms"]["p99"]:.0f} |
| RSS change after minute {WARMUP_MIN}, largest | """
        + ", ".join(f"{n} {d * 100:.1f}%" for n, d in drifts.items())
        + f"""  |
| held (0 errors, RSS within {FLAT * 100:.0f}%) | {"yes" if held else "NO"} |

![RSS over the soak](bench/soak-rss.png)

| minute | """
        + " | ".join(f"{n} MB" for n in names)
        + """ | all MB |
|"""
        + "---|" * (len(names) + 2)
        + f"""
{rows}
"""
    )
    args.out.write_text(text)
    print(text)
    return 0 if held else 1


def _draw(path: Path, samples: list[tuple[float, dict[str, float]]], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for name in names:
        axes.plot([m for m, _ in samples], [rss[name] for _, rss in samples], marker=".", label=name)
    axes.axvline(WARMUP_MIN, color="grey", linestyle=":")
    axes.set(title="resident memory during the soak", xlabel="minutes", ylabel="MB")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
