"""The replay evaluation: outcome classification, judging, the rates, the readers and `bot eval replay`.

The customer messages here are written for these tests (none comes from the public data sets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.eval.datasets import DatasetError
from bot.eval.replay import (
    Label,
    MessageResult,
    Observation,
    ReplayItem,
    classify_turn,
    judge,
    read_items,
    replay,
    summarise,
)

QUESTIONS = {"补办银行卡需要多少钱？": "kb-0001", "每天能换多少美元？": "kb-0002"}
KNOWLEDGE_IDS = frozenset(QUESTIONS.values())
SUMMARY_KEYS = {"n", "good_rate", "wrong_answer_rate", "answered", "clarified", "handed_over", "out_of_scope",
                "fallback"}
# label, message: a lost card, a knowledge question, a request for a person, and a question labelled with an
# answer the bot does not give (branch hours, labelled as a balance question): a known wrong answer
PAIRS = [("answer:report_card_loss", "我的银行卡好像丢了，怎么办"),
         ("answer:kb-0001", "补办一张卡要交多少钱"),
         ("handoff", "帮我转人工客服"),
         ("answer:check_balance", "网点周六开门吗")]


def reply(source: str, text: str = "…", buttons: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"text": text, "buttons": buttons, "source": source}


def classify(*replies: dict[str, Any], intent: str = "greet", confidence: float = 0.9) -> Observation:
    parse = {"intent": {"name": intent, "confidence": confidence},
             "retrieval": {"top": {"id": "kb-0001", "confidence": 0.42}}}
    return classify_turn(list(replies), parse, QUESTIONS, KNOWLEDGE_IDS, "utter_default")


def observed(outcome: str, intent: str | None = None, knowledge_id: str | None = None,
             options: tuple[str, ...] = ()) -> Observation:
    return Observation(outcome, intent, 0.5, knowledge_id, None, None, options, "")


# --- reading what the bot did ---------------------------------------------------------------------------------


def test_an_intents_response_is_an_answer_by_that_intent() -> None:
    seen = classify(reply("utter_card_loss_start"), reply("utter_ask_card_tail"), intent="report_card_loss")
    assert (seen.outcome, seen.intent, seen.knowledge_id, seen.answer_id) == \
        ("answer", "report_card_loss", None, "report_card_loss")
    assert (seen.confidence, seen.knowledge_top, seen.knowledge_confidence) == (0.9, "kb-0001", 0.42)


def test_a_knowledge_entry_is_an_answer_by_its_id() -> None:
    seen = classify(reply("kb-0002"), intent="nlu_fallback")
    assert (seen.outcome, seen.knowledge_id, seen.answer_id) == ("answer", "kb-0002", "kb-0002")


def test_a_menu_is_a_clarification_with_the_ids_it_offers() -> None:
    menu = [{"title": "补办银行卡需要多少钱？", "payload": "补办银行卡需要多少钱？"},
            {"title": "查余额", "payload": '/check_balance{"card_tail": "1234"}'},
            {"title": "别的", "payload": "随便什么"}]
    seen = classify(reply("clarify", "您是不是想问：", menu))
    assert seen.outcome == "clarify" and seen.options == ("kb-0001", "check_balance")
    assert classify(reply("utter_clarify_card_type")).outcome == "clarify"


@pytest.mark.parametrize(("sources", "outcome"), [
    (["utter_default", "handoff"], "handoff"),  # not understood, then queued for a person
    (["utter_complaint", "handoff"], "handoff"),
    (["utter_offer_human"], "handoff"),
    (["offer_human"], "handoff"),
    (["utter_out_of_scope_other_bank"], "out_of_scope"),
    (["utter_default"], "fallback"),
    (["utter_ask_rephrase"], "fallback"),
    ([], "fallback"),
])
def test_outcome_by_source(sources: list[str], outcome: str) -> None:
    assert classify(*[reply(s) for s in sources]).outcome == outcome


# --- judging ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "seen", "good", "wrong"), [
    ("answer:report_card_loss", observed("answer", "report_card_loss"), True, False),
    ("answer:kb-0001|card_replacement", observed("answer", "card_replacement"), True, False),
    ("answer:kb-0001|card_replacement", observed("answer", "check_balance", "kb-0001"), True, False),
    ("answer:check_balance", observed("answer", "branch_hours"), False, True),  # a confident wrong answer
    ("answer:kb-0001", observed("clarify", options=("kb-0002", "kb-0001")), True, False),
    ("answer:kb-0001", observed("clarify", options=("kb-0002",)), False, False),  # a menu without it
    ("answer:kb-0001", observed("handoff"), False, False),
    ("answer:kb-0001", observed("fallback"), False, False),
    ("out_of_scope", observed("out_of_scope"), True, False),
    ("out_of_scope", observed("clarify"), False, False),  # a menu of our own topics does not help
    ("out_of_scope", observed("handoff"), True, False),
    ("out_of_scope", observed("answer", "loan_apply"), False, True),  # another bank's loan answered as ours
    ("handoff", observed("handoff"), True, False),
    ("handoff", observed("clarify"), False, False),
    ("handoff", observed("out_of_scope"), False, False),
    ("clarify", observed("handoff"), True, False),
    ("clarify", observed("answer", "greet"), False, True),
    ("clarify", observed("fallback"), True, False),  # "please say more" asks too
])
def test_judge(label: str, seen: Observation, good: bool, wrong: bool) -> None:
    assert judge(Label.parse(label), seen) == (good, wrong)


@pytest.mark.parametrize("text", ["answer", "answer:", "maybe", "handoff:person", "clarify:kb-0001"])
def test_malformed_labels_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Label.parse(text)


def test_rates_are_over_all_messages() -> None:
    def result(label: str, seen: Observation) -> MessageResult:
        good, wrong = judge(Label.parse(label), seen)
        return MessageResult(ReplayItem("…", "x:1", Label.parse(label)), seen, good, wrong)

    results = [result("answer:kb-0001", observed("answer", knowledge_id="kb-0001")),
               result("answer:kb-0001", observed("answer", "greet")),
               result("clarify", observed("clarify")),
               result("out_of_scope", observed("answer", "loan_apply")),
               result("handoff", observed("fallback"))]
    assert summarise(results) == {"n": 5, "good_rate": 0.4, "wrong_answer_rate": 0.4, "answered": 3,
                                  "clarified": 1, "handed_over": 0, "out_of_scope": 0, "fallback": 1}
    unlabelled = [MessageResult(ReplayItem("…", "x:1"), observed("handoff"), None, None)]
    assert summarise(unlabelled)["good_rate"] is None and summarise(unlabelled)["handed_over"] == 1


# --- reading the messages ---------------------------------------------------------------------------------------


def write_labelled_set(root: Path) -> Path:
    """A pair file of messages written for this test, and a labels TSV referencing its lines and columns."""
    data = root / "data" / "pairs" / "mine"
    data.mkdir(parents=True)
    rows = ["text_a\ttext_b\tlabel", f"{PAIRS[0][1]}\t{PAIRS[1][1]}\t0", f"{PAIRS[2][1]}\t{PAIRS[3][1]}\t0"]
    (data / "dev.tsv").write_text("\n".join(rows) + "\n", "utf-8")
    where = [(2, "a", "tune"), (2, "b", "report"), (3, "a", "tune"), (3, "b", "report")]
    references = [f"pairs/mine/dev.tsv\t{line}\t{column}\t{label}\t{half}"
                  for (line, column, half), (label, _) in zip(where, PAIRS, strict=True)]
    labels = ["file\tline\tcolumn\tlabel\thalf", *references]
    (root / "labels.tsv").write_text("\n".join(labels) + "\n", "utf-8")
    return root / "labels.tsv"


def test_a_labels_file_reads_the_referenced_lines(tmp_path: Path) -> None:
    labels = write_labelled_set(tmp_path)
    items = read_items(labels, tmp_path / "data")
    assert [(i.text, str(i.label)) for i in items] == [(text, label) for label, text in PAIRS]
    assert items[1].ref == "pairs/mine/dev.tsv:2:b"
    assert [i.text for i in read_items(labels, tmp_path / "data", half="report")] == [PAIRS[1][1], PAIRS[3][1]]


def test_a_text_file_is_labelled_by_line(tmp_path: Path) -> None:
    (tmp_path / "messages.txt").write_text("\n".join(text for _, text in PAIRS) + "\n", "utf-8")
    assert len(read_items(tmp_path / "messages.txt", tmp_path)) == 4
    (tmp_path / "labels.tsv").write_text("line\tlabel\n3\thandoff\n1\tanswer:report_card_loss\n", "utf-8")
    items = read_items(tmp_path / "messages.txt", tmp_path, labels=tmp_path / "labels.tsv")
    assert [(i.text, i.ref, str(i.label)) for i in items] == [(PAIRS[2][1], "messages.txt:3", "handoff"),
                                                             (PAIRS[0][1], "messages.txt:1", "answer:report_card_loss")]


def test_bad_references_name_the_file_and_line(tmp_path: Path) -> None:
    labels = write_labelled_set(tmp_path)
    labels.write_text(labels.read_text("utf-8") + "pairs/mine/dev.tsv\t9\ta\thandoff\ttune\n", "utf-8")
    with pytest.raises(DatasetError, match=r"labels.tsv:6: line '9' is not a data line"):
        read_items(labels, tmp_path / "data")
    labels.write_text("file\tline\tlabel\npairs/mine/dev.tsv\t2\tperhaps\n", "utf-8")
    with pytest.raises(DatasetError, match=r"labels.tsv:2: label must start with"):
        read_items(labels, tmp_path / "data")


# --- through the bot --------------------------------------------------------------------------------------------


def test_replay_through_the_conversation_service(minibot_assistant: Any, tmp_path: Path) -> None:
    items = read_items(write_labelled_set(tmp_path), tmp_path / "data")
    results = replay(items, minibot_assistant, minibot_assistant.config)
    seen = [(r.observation.outcome, r.observation.answer_id, r.good, r.wrong_answer) for r in results]
    assert seen == [("answer", "report_card_loss", True, False), ("answer", "kb-0001", True, False),
                    ("handoff", None, True, False), ("answer", "branch_hours", False, True)]
    assert summarise(results) == {"n": 4, "good_rate": 0.75, "wrong_answer_rate": 0.25, "answered": 3,
                                  "clarified": 0, "handed_over": 1, "out_of_scope": 0, "fallback": 0}


def test_the_command_prints_the_summary_and_each_message(minibot: Path, minibot_assistant: Any, tmp_path: Path) -> None:
    labels = write_labelled_set(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT__")}
    command = [sys.executable, "-m", "bot.cli", "eval", "replay", "--file", str(labels), "--data-root",
               str(tmp_path / "data"), "--half", "report", "--per-message", "--json"]
    done = subprocess.run(command, cwd=minibot, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    summary, *messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert summary == {"n": 2, "good_rate": 0.5, "wrong_answer_rate": 0.5, "answered": 2, "clarified": 0,
                       "handed_over": 0, "out_of_scope": 0, "fallback": 0}
    assert set(summary) == SUMMARY_KEYS
    assert [m["outcome"] for m in messages] == ["answer", "answer"]
    assert {"text", "label", "outcome", "intent", "confidence", "knowledge_id", "reply"} <= set(messages[0])
    assert messages[1]["text"] == PAIRS[3][1] and messages[1]["wrong_answer"] is True
