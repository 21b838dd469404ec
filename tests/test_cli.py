"""The `bot` command end to end on the fixture bot, in a subprocess like a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BOT = [sys.executable, "-m", "bot.cli"]


def run(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__")}
    return subprocess.run(BOT + args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, env=env)


def test_train_then_shell(minibot: Path) -> None:
    trained = run(["train"], minibot)
    assert trained.returncode == 0, trained.stderr
    assert "4 intents" in trained.stdout and "4 knowledge entries" in trained.stdout
    shell = run(["shell"], minibot, stdin="我的卡丢了\n补卡要多少钱\n")
    assert shell.returncode == 0, shell.stderr
    assert "report_card_loss" in shell.stdout
    assert "银行卡丢失请立即通过手机银行" in shell.stdout
    assert "kb-0001" in shell.stdout and "工本费5元" in shell.stdout


def test_validate_passes_on_clean_data(minibot: Path) -> None:
    result = run(["validate"], minibot)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_validate_reports_problems(tmp_path: Path, minibot: Path) -> None:
    (tmp_path / "nlu_data").mkdir()
    (tmp_path / "config.yml").write_text((minibot / "config.yml").read_text("utf-8"), "utf-8")
    (tmp_path / "nlu_data" / "a.yml").write_text(
        "nlu:\n- intent: greet\n  examples: |\n    - 你好\n    - 您好呀呀\n"
        "- intent: hello\n  examples: |\n    - 你好\n    - 您好呀呀呀\n"
        "responses:\n  utter_greet:\n  - text: hi\n", "utf-8")
    result = run(["validate"], tmp_path)
    assert result.returncode == 1
    assert "the example '你好' is in 2 intents" in result.stderr
    assert "intent 'hello' has no rule and no response 'utter_hello'" in result.stderr
    assert "near-duplicate examples" in result.stderr


def test_validate_reports_broken_yaml_with_line(tmp_path: Path, minibot: Path) -> None:
    (tmp_path / "nlu_data").mkdir()
    (tmp_path / "config.yml").write_text((minibot / "config.yml").read_text("utf-8"), "utf-8")
    (tmp_path / "nlu_data" / "bad.yml").write_text("nlu:\n- intent: a\n  examples: x: y\n", "utf-8")
    result = run(["validate"], tmp_path)
    assert result.returncode == 1
    assert "bad.yml:3: YAML syntax error" in result.stderr


def test_cross_validation_writes_reports(minibot: Path, tmp_path: Path) -> None:
    result = run(["test", "--folds", "3", "--out", str(tmp_path / "report")], minibot)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_examples"] == 24 and 0.5 <= summary["accuracy"] <= 1.0
    report = json.loads((tmp_path / "report" / "intent_report.json").read_text("utf-8"))
    assert {"greet", "report_card_loss", "check_balance", "branch_hours"} <= report.keys()
    assert (tmp_path / "report" / "confusion_matrix.png").stat().st_size > 1000
    assert "<table>" in (tmp_path / "report" / "confusion_matrix.html").read_text("utf-8")


def test_bad_config_exits_with_message(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("pipeline:\n- name: nope\n", "utf-8")
    result = run(["validate"], tmp_path)
    assert result.returncode == 1
    assert "unknown step name" in result.stderr


def test_a_model_is_stale_once_the_training_data_changes(tmp_path: Path) -> None:
    import shutil

    from bot.config import load_config
    from bot.model import is_stale, latest_model_dir, train

    shutil.copytree(Path(__file__).parent / "fixtures" / "minibot", tmp_path, dirs_exist_ok=True)
    config = load_config(tmp_path / "config.yml", environ={})
    model = train(config)
    assert latest_model_dir(config) == model and not is_stale(model, config)
    faq = tmp_path / "knowledge" / "faq.yml"
    faq.write_text(faq.read_text("utf-8") + "\n", "utf-8")
    assert is_stale(model, config)


def test_agents_add_creates_an_account_with_a_hashed_password(minibot: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__")}
    env |= {"BOT_AGENT_PASSWORD": "correct horse battery", "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    command = [*BOT, "agents", "add", "wang", "--name", "小王", "--group", "综合服务"]
    done = subprocess.run(command, cwd=minibot, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "agent wang (小王, agent) serves 综合服务" in done.stdout
    again = subprocess.run(command, cwd=minibot, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = subprocess.run([*BOT, "agents", "add", "li", "--name", "小李", "--group", "火星"], cwd=minibot,
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 1 and "unknown skill group" in bad.stderr

    from bot.handoff.agents import authenticate
    from bot.storage import Database

    account = authenticate(Database(env["DATABASE_URL"]), "wang", "correct horse battery")
    assert account is not None and account.password_hash.startswith("$argon2")


def test_eval_calibrate_prints_a_calibration_block_fitted_on_labelled_messages(minibot: Path) -> None:
    messages = ["我的卡丢了", "银行卡不见了", "查一下余额", "卡里还有多少钱", "补办银行卡多少钱", "换美元每天限额",
                "信用卡年费", "我想投诉你们", "你们几点下班", "房贷利率多少", "股票怎么买", "帮我订机票"]
    labels = ["answer:report_card_loss", "answer:report_card_loss", "answer:check_balance", "answer:check_balance",
              "answer:kb-0001", "answer:kb-0002", "answer:kb-0003", "handoff", "clarify", "handoff",
              "out_of_scope", "out_of_scope"]
    (minibot / "messages.txt").write_text("\n".join(messages) + "\n", encoding="utf-8")
    rows = "".join(f"{n}\t{label}\n" for n, label in enumerate(labels, 1))
    (minibot / "labels.tsv").write_text("line\tlabel\n" + rows, "utf-8")
    result = run(["eval", "calibrate", "--file", "messages.txt", "--labels", "labels.tsv"], minibot)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dialogue:\n  calibration:\n    intent: {weight: ")
    assert "knowledge: {weight: " in result.stdout and "fitted on 12 messages" in result.stderr
    fitted = json.loads(run(["eval", "calibrate", "--file", "messages.txt", "--labels", "labels.tsv", "--json"],
                            minibot).stdout)
    assert fitted["calibration"]["intent"]["weight"] > 0 and fitted["reliability"]["n"] == 12
    unlabelled = run(["eval", "calibrate", "--file", "messages.txt"], minibot)
    assert unlabelled.returncode == 1 and "needs a label on every message" in unlabelled.stderr


def test_test_stories_runs_a_projects_test_stories_and_annotates_the_failed_ones(tmp_path: Path) -> None:
    import shutil

    project = shutil.copytree(Path(__file__).parent / "fixtures" / "rasa_moodbot", tmp_path / "moodbot")
    passed = run(["test", "stories", "--project", str(project), "--json"], tmp_path)
    assert passed.returncode == 0, passed.stderr
    result = json.loads(passed.stdout)
    assert result["failed"] == 0 and result["passed"] == result["stories"] >= 1 and result["action_accuracy"] == 1.0
    wrong = tmp_path / "wrong_stories.yml"
    wrong.write_text('version: "3.1"\nstories:\n- story: a greeting answered with cheer\n  steps:\n'
                     '  - user: |\n      hello there\n    intent: greet\n  - action: utter_cheer_up\n', "utf-8")
    failed = run(["test", "stories", "--project", str(project), "--stories", str(wrong)], tmp_path)
    assert failed.returncode == 1
    assert "- action: utter_cheer_up  # predicted: utter_greet" in failed.stdout
    assert '"failed": 1' in failed.stdout


def test_cross_validation_of_a_project_with_stories_reports_the_policies_held_out_accuracy(tmp_path: Path) -> None:
    import shutil

    project = shutil.copytree(Path(__file__).parent / "fixtures" / "rasa_moodbot", tmp_path / "moodbot")
    result = run(["test", "--project", str(project), "--folds", "2", "--out", str(tmp_path / "cv")], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["held_out_actions"] > 0 and 0.5 <= summary["held_out_action_accuracy"] <= 1.0
    mistakes = json.loads((tmp_path / "cv" / "story_errors.json").read_text("utf-8"))
    assert len(mistakes) == round(summary["held_out_actions"] * (1 - summary["held_out_action_accuracy"]))
