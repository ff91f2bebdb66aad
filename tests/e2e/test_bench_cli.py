"""`enginehouse bench` against the real server: it prints its report, writes JSON and a PNG, and
its token count equals what the server's /metrics counted for the same requests."""

import json
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

MODEL = "smollm2-135m-instruct"


def completion_tokens(server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "enginehouse_completion_tokens_total" and sample.labels["model"] == MODEL:
                return sample.value
    raise AssertionError("no completion token counter for the model")


def test_bench_reports_writes_json_and_png_and_agrees_with_metrics(server, tmp_path):
    before = completion_tokens(server)
    out, png = tmp_path / "report.json", tmp_path / "plot.png"
    command = [sys.executable, "-m", "gateway", "bench", "--url", server.url, "--model", MODEL]
    command += ["--concurrency", "4", "--num-requests", "6", "--max-tokens", "16", "--no-progress"]
    command += ["--json", str(out), "--plot", str(png), "--goodput", "e2el:600000"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "6 completed, 0 failed" in result.stdout and "TTFT ms: mean" in result.stdout
    report = json.loads(out.read_text())
    assert report["completed"] == 6 and report["output_tokens"] == 6 * 16  # ignore_eos
    assert report["output_tokens"] == completion_tokens(server) - before
    assert report["goodput_req_s"] > 0 and report["settings"]["model"] == MODEL
    assert set(report["ttft_ms"]) == {"mean", "median", "p90", "p99"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_embeddings_and_bad_flags(server):
    command = [sys.executable, "-m", "gateway", "bench", "--url", server.url, "--no-progress"]
    embed = subprocess.run(
        [*command, "--endpoint", "embeddings", "--model", "all-minilm-l6-v2", "--num-requests", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert embed.returncode == 0 and "4 completed" in embed.stdout, embed.stderr
    bad = subprocess.run([*command, "--goodput", "speed:1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("enginehouse bench: --goodput")


def test_bench_takes_base_url_as_vllm_bench_serve_names_it(server):
    # as a vllm bench serve script passes it; a trailing /v1 is dropped
    command = [sys.executable, "-m", "gateway", "bench", "--base-url", f"{server.url}/v1", "--model", MODEL]
    command += ["--num-requests", "2", "--max-tokens", "4", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "2 completed, 0 failed" in result.stdout, result.stderr
