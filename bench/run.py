"""Benchmarks: this project's NLU and retrieval next to a simple baseline, on the public data in ../shared/datasets.

    python bench/run.py [--datasets DIR] [--only intents,pairs,qa,bot,replay] [--out bench/RESULTS.md]

Every figure comes from the same functions `bot eval` calls, run in this process; the baselines run in the same
process on the same files (character n-gram TF-IDF + linear SVM for intents, BM25 for pairs and QA). The raw
numbers go to results/bench.json and a Markdown report with the targets, met or missed, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.baselines import bm25_pair_baseline, svm_intent_baseline  # noqa: E402
from bot.config import BotConfig, load_config  # noqa: E402
from bot.eval.intents import evaluate_intents  # noqa: E402
from bot.eval.pairs import evaluate_pairs  # noqa: E402
from bot.eval.qa import LEXICAL_ONLY, evaluate_qa_weights  # noqa: E402

DENSE_ONLY = np.array([0.0, 0.0, 1.0])
SUPPORT_VARIANT = 0.45  # intent_classifier.min_support tried on CLINC150, the one set with out-of-scope test data
REPLAY_DIR = REPO / "bench" / "replay"  # labels of real customer messages (references into the data sets)


@dataclass(frozen=True)
class Target:
    what: str
    metric: str
    goal: float
    higher_is_better: bool = True

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.goal if self.higher_is_better else value <= self.goal


TARGETS = {
    "banking77": [Target("Banking77 accuracy", "accuracy", 0.94),
                  Target("Banking77 parse latency p99 (ms)", "parse_ms_p99", 10.0, False)],
    "clinc150": [Target("CLINC150 in-scope accuracy", "in_scope_accuracy", 0.96),
                 Target("CLINC150 OOS recall", "oos_recall", 0.70),
                 Target("CLINC150 parse latency p99 (ms)", "parse_ms_p99", 10.0, False)],
    "smp2017": [Target("SMP2017 accuracy", "accuracy", 0.95),
                Target("SMP2017 parse latency p99 (ms)", "parse_ms_p99", 10.0, False)],
    "bq": [Target("BQ accuracy", "accuracy", 0.85)],
    "bundled": [Target("bundled bot parse latency p99, NLU + retrieval (ms)", "parse_ms_p99", 10.0, False),
                Target("`bot train` on the bundled bot (s)", "train_seconds", 60.0, False),
                Target("serving process RSS (MB)", "rss_mb", 500.0, False)],
    "replay": [Target("replay, reporting half: wrong-answer rate", "wrong_answer_rate", 0.05, False),
               Target("replay, reporting half: good rate", "good_rate", 0.85)],
}

INTENT_SETS = {  # name: (train split, test split)
    "banking77": ("train", "test"),
    "clinc150": ("train", "val"),
    "smp2017": ("train", "dev"),
}


def run_intents(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    results = {}
    for name, (train_split, test_split) in INTENT_SETS.items():
        folder = datasets / "intents" / name
        train, test = folder / f"{train_split}.tsv", folder / f"{test_split}.tsv"
        _log(f"intents {name}: ours")
        ours = evaluate_intents([train], test, config)
        _log(f"intents {name}: ours without the dense encoder")
        lexical = evaluate_intents([train], test, _without_encoder(config))
        _log(f"intents {name}: baseline")
        results[name] = {"ours": ours, "ours_no_encoder": lexical, "baseline": svm_intent_baseline(train, test)}
        if name == "clinc150":
            _log(f"intents {name}: ours with min_support {SUPPORT_VARIANT}")
            variant = _with_min_support(config, SUPPORT_VARIANT)
            results[name]["ours_min_support"] = evaluate_intents([train], test, variant)
    return results


def run_pairs(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    """BQ ships one split here (dev, 10,000 pairs): the first half picks the threshold, the second is the test.
    The scorer is trained on ATEC (another Chinese fintech customer-service set), so no BQ pair is trained on."""
    bq_dev, bq_test = split_half(datasets / "pairs" / "bq" / "dev.tsv", work)
    atec = datasets / "pairs" / "atec" / "train.tsv"
    _log("pairs bq: ours (train ATEC, threshold on BQ half 1, test BQ half 2)")
    ours = evaluate_pairs(atec, bq_dev, bq_test, config)
    _log("pairs bq: ours without the dense encoder")
    lexical = evaluate_pairs(atec, bq_dev, bq_test, _without_encoder(config))
    _log("pairs bq: baseline")
    baseline = bm25_pair_baseline(bq_dev, bq_test)
    return {"bq": {"ours": ours, "ours_no_encoder": lexical, "baseline": baseline}}


def run_qa(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    root = datasets / "qa" / "insuranceqa_zh"
    _log("qa insuranceqa_zh: hybrid, BM25 only, dense only")
    ours, others = evaluate_qa_weights(root / "answers.tsv", root / "valid.jsonl", config,
                                       fixed={"baseline": LEXICAL_ONLY, "dense_only": DENSE_ONLY})
    return {"insuranceqa_zh": {"ours": ours, "baseline": {**others["baseline"], "n_test": ours["n_test"]},
                               "dense_only": {**others["dense_only"], "n_test": ours["n_test"]}}}


def run_bundled(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    """The bundled bank bot: train time, parse latency of the served model, RSS of the serving process."""
    from threadpoolctl import threadpool_limits

    from bot.agent import Agent
    from bot.model import train
    from bot.training_data import load_training_data

    _log("bundled bot: train")
    started = time.perf_counter()
    model_dir = train(config)
    train_seconds = time.perf_counter() - started
    agent = Agent.load(config, model_dir)
    texts = [e.text for e in load_training_data(config.path(config.nlu_data)).examples]
    timings = []
    with threadpool_limits(limits=1):
        for text in texts[:20]:
            agent.parse(text)
        for text in texts:
            begun = time.perf_counter()
            agent.parse(text)
            timings.append((time.perf_counter() - begun) * 1000)
    _log("bundled bot: serving RSS")
    return {"bundled": {"ours": {"train_seconds": round(train_seconds, 2),
                                 "parse_ms_p50": round(float(np.percentile(timings, 50)), 3),
                                 "parse_ms_p99": round(float(np.percentile(timings, 99)), 3),
                                 "rss_mb": serving_rss_mb(config, texts[:200]), "n_test": len(texts)}}}


def run_replay(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    """The labelled real customer messages of bench/replay/ through the bundled bot, a fresh conversation each,
    answered by a model trained now (a model left in models/ may come from other code). Every message is replayed
    once; the tuning and the reporting half are summarised apart ("ours" is the reporting half), next to today's
    behaviour (bench/replay/today.json). Per-message results go to results/bench/replay_messages.jsonl."""
    from bot.agent import Agent
    from bot.eval.replay import by_label_kind, read_items, replay, summarise
    from bot.model import train

    _log("replay: train, then the labelled customer messages through the bundled bot")
    agent = Agent.load(config, train(config))
    results = replay(read_items(REPLAY_DIR / "labels.tsv", datasets), agent, config)
    lines = [json.dumps(r.as_json(), ensure_ascii=False) for r in results]
    (work / "replay_messages.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    report = [r for r in results if r.item.half == "report"]
    today = json.loads((REPLAY_DIR / "today.json").read_text("utf-8")) if (REPLAY_DIR / "today.json").exists() else {}
    return {"replay": {"ours": summarise(report), "tune_half": summarise([r for r in results if r.item.half == "tune"]),
                       "report_by_kind": by_label_kind(report), "today": today, "code": _git_version()}}


def _git_version() -> str | None:
    """The commit the code was run from, `-dirty` with uncommitted changes; None outside a git checkout."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True,
                              timeout=10)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def serving_rss_mb(config: BotConfig, texts: list[str], port: int = 8765) -> float:
    """Start `bot run`, answer some messages through the REST webhook, read the process's resident memory."""
    command = [sys.executable, "-m", "bot.cli", "run", "--config", str(config.root / "config.yml"), "--port", str(port)]
    server = subprocess.Popen(command, cwd=config.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/ready", server)
        for i, text in enumerate(texts):
            body = json.dumps({"sender": f"bench-{i % 10}", "message": text}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/rest/webhook", data=body,
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=30).read()
        return _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def split_half(path: Path, work: Path) -> tuple[Path, Path]:
    header, *rows = path.read_text("utf-8").splitlines()
    middle = len(rows) // 2
    first, second = work / f"{path.parent.name}_half1.tsv", work / f"{path.parent.name}_half2.tsv"
    first.write_text("\n".join([header, *rows[:middle]]) + "\n", "utf-8")
    second.write_text("\n".join([header, *rows[middle:]]) + "\n", "utf-8")
    return first, second


def _with_min_support(config: BotConfig, value: float = 0.45) -> BotConfig:
    steps = [s.model_copy(update={"min_support": value}) if s.name == "intent_classifier" else s
             for s in config.pipeline]
    return config.model_copy(update={"pipeline": steps})


def _without_encoder(config: BotConfig) -> BotConfig:
    return config.model_copy(update={"retrieval": config.retrieval.model_copy(update={"encoder": "none"})})


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"`bot run` exited with {server.returncode} before it was ready")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


Section = Callable[[Path, BotConfig, Path], dict[str, Any]]
SECTIONS: dict[str, Section] = {"intents": run_intents, "pairs": run_pairs, "qa": run_qa, "bot": run_bundled,
                                "replay": run_replay}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=REPO / "results" / "bench.json")
    args = parser.parse_args()

    config = load_config(REPO / "config.yml")
    work = REPO / "results" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(args.json.read_text("utf-8")) if args.json.exists() else {}
    for section in args.only.split(","):
        started = time.perf_counter()
        if section not in SECTIONS:
            parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
        results.update(SECTIONS[section](args.datasets, config, work))
        _log(f"{section} done in {time.perf_counter() - started:.0f} s")
    results["_machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "date": time.strftime("%Y-%m-%d"), "encoder": config.retrieval.encoder}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), "utf-8")
    from bench.report import render

    args.out.write_text(render(results, TARGETS), "utf-8")
    _log(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
