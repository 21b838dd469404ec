"""The load benchmark's tool (bench/load.py) on a short embedded run: a real `bot run`, a handful of customers over
REST and the widget socket for a few seconds; the numbers are sane, nothing failed, and its RESULTS.md section
replaces only what lies between its markers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.load import END_MARK, START_MARK, RunSpec, run, write_results


@pytest.fixture(scope="module")
def short_run() -> dict:
    return run(RunSpec("embedded", workers=1, customers=4, seconds=4.0, websocket_share=0.5))


def test_a_short_embedded_run_answers_every_message(short_run: dict) -> None:
    assert short_run["errors"] == 0, short_run["error_samples"]
    assert short_run["messages"] >= 8
    assert set(short_run["by_channel"]) == {"rest", "websocket"}  # both kinds of customer were answered
    assert 3.5 <= short_run["seconds"] <= 30
    assert short_run["messages_per_second"] == pytest.approx(short_run["messages"] / short_run["seconds"], rel=0.05)
    p50, p95, p99 = short_run["p50_ms"], short_run["p95_ms"], short_run["p99_ms"]
    assert all(math.isfinite(v) for v in (p50, p95, p99)) and 0 < p50 <= p95 <= p99 < 30_000
    assert 50 < short_run["worker_rss_mb"] < 4000  # the serving process was measured
    assert 0 <= short_run["client_cpu_share"] < 1 and short_run["server_cpu_share"] > 0
    assert {c["target"] for c in short_run["targets"]} >= {"zero errors", "p99 ≤ 300 ms"}


def test_the_results_section_is_replaced_between_its_markers(short_run: dict, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nearlier sections\n", "utf-8")
    write_results([short_run], results)
    write_results([short_run, {"run": "scale-out, 2 workers", "failed": "RuntimeError: test"}], results)
    text = results.read_text("utf-8")
    assert text.startswith("# Benchmark results\n\nearlier sections\n")
    assert text.count(START_MARK) == 1 and text.count(END_MARK) == 1
    section = text.split(START_MARK, 1)[1]
    assert "| embedded | 4 |" in section and "**run failed**: RuntimeError: test" in section
    assert "**met**" in section or "**missed**" in section
