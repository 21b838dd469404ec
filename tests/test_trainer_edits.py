"""The trainer's edits (bot/trainer/edits.py) on copies of the bundled bot's real files, the validator's findings
for a proposal (bot/trainer/findings.py), and the editing API (bot/web/trainer_edit_api.py)."""

from __future__ import annotations

import difflib
import hashlib
import shutil
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.handoff.agents import create_agent
from bot.retrieval.knowledge import load_knowledge
from bot.storage import Database
from bot.storage.models import AuditEntry, ReviewMark
from bot.trainer.edits import DataEditor, EditConflict, EditError, EditNotFound, file_version, next_entry_id
from bot.trainer.findings import example_findings, question_findings, response_findings, rule_findings
from bot.trainer.keys import message_key
from bot.training_data import load_training_data
from bot.validate import intents_without_responses, unknown_rule_actions
from bot.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
MINIBOT = Path(__file__).parent / "fixtures" / "minibot"
PASSWORD = "edit-pass-00001"


# --- the writers, on copies of the bundled bot's files ---------------------------------------------------------


@pytest.fixture
def bundled(tmp_path: Path) -> tuple[DataEditor, list[tuple]]:
    shutil.copytree(ROOT / "nlu_data", tmp_path / "nlu_data")
    shutil.copytree(ROOT / "knowledge", tmp_path / "knowledge")
    audits: list[tuple] = []
    return DataEditor(tmp_path / "nlu_data", tmp_path / "knowledge", lambda *a: audits.append(a)), audits


def added_lines(before: str, after: str) -> list[str]:
    """The lines `after` adds to `before`; fails if any line of `before` was removed or changed."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    assert [d for d in diff if d.startswith("- ")] == [], "lines of the original were changed or removed"
    return [d[2:] for d in diff if d.startswith("+ ")]


def test_add_examples_appends_to_the_intents_block_and_nothing_else_changes(bundled) -> None:
    editor, audits = bundled
    cards = editor.nlu_dir / "cards.yml"
    before = cards.read_text(encoding="utf-8")
    versions = editor.add_examples("report_card_loss", ["卡丢了怎么弄啊", "挂失", " 卡丢了怎么弄啊 "], actor="agent:7")
    after = cards.read_text(encoding="utf-8")
    assert added_lines(before, after) == ["    - 卡丢了怎么弄啊"]  # "挂失" is there already; repeats once
    assert after.index("卡丢了怎么弄啊") < after.index("- intent: cancel_card_loss")
    assert versions == {"nlu_data/cards.yml": hashlib.sha256(cards.read_bytes()).hexdigest()}
    data = load_training_data(editor.nlu_dir)
    assert any(e.text == "卡丢了怎么弄啊" and e.intent == "report_card_loss" for e in data.examples)
    assert audits == [("agent:7", "trainer.add_examples", "report_card_loss",
                       {"texts": ["卡丢了怎么弄啊", "挂失"], "files": versions})]
    with pytest.raises(EditNotFound, match="没有意图 no_such_intent"):
        editor.add_examples("no_such_intent", ["随便"], actor="agent:7")


def test_out_of_scope_messages_become_examples_of_the_out_of_scope_intent_comments_kept(bundled) -> None:
    editor, _ = bundled
    path = editor.nlu_dir / "out_of_scope.yml"
    before = path.read_text(encoding="utf-8")
    editor.mark_out_of_scope(["帮我买一张彩票"], actor="agent:7")
    assert added_lines(before, path.read_text(encoding="utf-8")) == ["    - 帮我买一张彩票"]
    assert path.read_text(encoding="utf-8").startswith(before.split("nlu:")[0])  # the header comment
    data = load_training_data(editor.nlu_dir)
    assert any(e.text == "帮我买一张彩票" and e.intent == "out_of_scope" for e in data.examples)


def test_out_of_scope_in_a_project_without_its_rule_gets_the_rule_and_a_response(tmp_path: Path) -> None:
    """Without a rule for `out_of_scope` the bot would answer a message marked out of scope with its fallback."""
    shutil.copytree(MINIBOT / "nlu_data", tmp_path / "nlu_data")
    editor = DataEditor(tmp_path / "nlu_data", tmp_path / "knowledge", lambda *a: None)
    editor.mark_out_of_scope(["帮我买一张彩票"], actor="agent:7")
    data = load_training_data(tmp_path / "nlu_data")
    rule = next(r for r in data.rules if {"intent": "out_of_scope"} in r["steps"])
    assert rule["steps"] == [{"intent": "out_of_scope"}, {"action": "utter_out_of_scope"}]
    assert rule["source"].startswith(str(tmp_path / "nlu_data" / "domain.yml"))  # where the rules live
    assert "不在我们的服务范围内" in data.responses["utter_out_of_scope"][0]["text"]
    assert unknown_rule_actions(data) == [] and "out_of_scope" not in intents_without_responses(data)
    domain = (tmp_path / "nlu_data" / "domain.yml").read_text(encoding="utf-8")
    editor.mark_out_of_scope(["帮我订机票"], actor="agent:7")  # the second time: only the example
    assert (tmp_path / "nlu_data" / "domain.yml").read_text(encoding="utf-8") == domain


def test_create_intent_writes_examples_response_and_rule_where_each_lives(bundled) -> None:
    editor, _ = bundled
    responses, rules = editor.nlu_dir / "responses.yml", editor.nlu_dir / "rules.yml"
    before = {p: p.read_text(encoding="utf-8") for p in (responses, rules)}
    versions = editor.create_intent("ask_card_fee", ["办卡要钱吗", "开卡收费吗"], "开借记卡免费。", actor="agent:7")
    assert set(versions) == {"nlu_data/trainer.yml", "nlu_data/responses.yml", "nlu_data/rules.yml"}
    assert added_lines(before[responses], responses.read_text(encoding="utf-8")) == [
        "  utter_ask_card_fee:", "  - text: 开借记卡免费。"]
    assert added_lines(before[rules], rules.read_text(encoding="utf-8")) == [
        "- rule: respond to ask_card_fee", "  steps:", "  - intent: ask_card_fee", "  - action: utter_ask_card_fee"]
    assert (editor.nlu_dir / "trainer.yml").read_text(encoding="utf-8") == (
        'version: "3.1"\nnlu:\n- intent: ask_card_fee\n  examples: |\n    - 办卡要钱吗\n    - 开卡收费吗\n')
    data = load_training_data(editor.nlu_dir)
    assert {e.text for e in data.examples if e.intent == "ask_card_fee"} == {"办卡要钱吗", "开卡收费吗"}
    assert intents_without_responses(data) == [] and unknown_rule_actions(data) == []
    with pytest.raises(EditError, match="已存在"):
        editor.create_intent("ask_card_fee", ["再来一次"], "x", actor="agent:7")


COMMENTED = """\
version: "3.1"
# greetings first: the bot's first impression
nlu:
- intent: greet  # said at the start
  examples: |
    # plain
    - 你好
    - 您好
    # with a time of day
    - 早上好
    - 晚上好
# cards below
- intent: report_card_loss
  examples: |
    - 我的卡丢了
responses:
  utter_greet:
  - text: "您好！"  # quoted on purpose
  - text: 有什么可以帮您？
    channel: wechat
"""


def test_a_round_trip_keeps_comments_order_and_quotes(tmp_path: Path) -> None:
    (tmp_path / "nlu").mkdir()
    path = tmp_path / "nlu" / "nlu.yml"
    path.write_text(COMMENTED, encoding="utf-8")
    editor = DataEditor(tmp_path / "nlu", tmp_path / "kb", lambda *a: None)
    editor.set_examples("greet", ["您好", "早上好", "嗨"], actor="t", version=file_version(path))
    assert path.read_text(encoding="utf-8") == COMMENTED.replace(
        "    # plain\n    - 你好\n    - 您好\n", "    # plain\n    - 您好\n").replace(
        "    - 晚上好\n", "    - 嗨\n")
    editor.set_response("utter_greet", [{"text": "您好！"}, {"text": "您好，请问办理什么业务？", "channel": "wechat"}],
                        actor="t", version=file_version(path))
    text = path.read_text(encoding="utf-8")
    assert '  - text: "您好！"  # quoted on purpose\n' in text  # the unchanged variant is untouched
    assert "  - text: 您好，请问办理什么业务？\n    channel: wechat\n" in text
    assert text.index("# cards below") < text.index("- intent: report_card_loss") < text.index("responses:")
    assert load_training_data(path).responses["utter_greet"][1] == {"text": "您好，请问办理什么业务？",
                                                                    "channel": "wechat"}


def test_set_response_with_channel_variants_on_the_real_responses_file(bundled) -> None:
    editor, _ = bundled
    path = editor.nlu_dir / "responses.yml"
    before = path.read_text(encoding="utf-8")
    old = load_training_data(editor.nlu_dir).responses["utter_default"]
    editor.set_response("utter_default", [*old, {"text": "抱歉没听懂，回复“转人工”找客服。", "channel": "wechat"}],
                        actor="t", version=file_version(path))
    assert added_lines(before, path.read_text(encoding="utf-8")) == [
        "  - text: 抱歉没听懂，回复“转人工”找客服。", "    channel: wechat"]
    assert load_training_data(editor.nlu_dir).responses["utter_default"][-1]["channel"] == "wechat"


def test_synonyms_lookups_and_regexes_are_replaced_in_their_blocks(bundled) -> None:
    editor, audits = bundled
    entities = editor.nlu_dir / "entities.yml"
    editor.set_synonym("信用卡", ["信用咔", "贷记卡", "信用k"], actor="t", version=file_version(entities))
    data = load_training_data(editor.nlu_dir)
    assert data.synonyms["信用k"] == "信用卡" and "creditcard" not in data.synonyms
    lookup_file = editor.nlu_dir / "out_of_scope.yml"
    editor.set_lookup("other_institution", ["借呗", "花呗", "某某贷"], actor="t", version=file_version(lookup_file))
    assert load_training_data(editor.nlu_dir).lookups["other_institution"] == ["借呗", "花呗", "某某贷"]
    regex = next(p for p in editor.nlu_dir.glob("*.yml") if "- regex:" in p.read_text(encoding="utf-8"))
    name = load_training_data(regex).regexes.popitem()[0]
    editor.set_regex(name, [r"\d{4}"], actor="t", version=file_version(regex))
    assert load_training_data(editor.nlu_dir).regexes[name] == [r"\d{4}"]
    assert [a[1] for a in audits] == ["trainer.set_synonym", "trainer.set_lookup", "trainer.set_regex"]


def test_an_edit_that_would_break_the_file_is_refused_and_writes_nothing(bundled) -> None:
    editor, audits = bundled
    regex = next(p for p in editor.nlu_dir.glob("*.yml") if "- regex:" in p.read_text(encoding="utf-8"))
    name = load_training_data(regex).regexes.popitem()[0]
    before = regex.read_bytes()
    with pytest.raises(EditError, match=f"修改后的 nlu_data/{regex.name} 无法读取"):
        editor.set_regex(name, ["([unclosed"], actor="t", version=file_version(regex))
    assert regex.read_bytes() == before and audits == []
    assert [p.name for p in editor.nlu_dir.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_similar_questions_and_new_entries_in_the_knowledge_base(bundled) -> None:
    editor, audits = bundled
    loans = editor.knowledge_dir / "loans.yml"
    before = loans.read_text(encoding="utf-8")
    editor.add_similar_questions("kb-loan-0001", ["贷款要什么条件啊", "我能申请贷款吗"], actor="t")
    assert added_lines(before, loans.read_text(encoding="utf-8")) == ["  - 贷款要什么条件啊"]
    numbers = [int(e.id.rsplit("-", 1)[1]) for e in load_knowledge(editor.knowledge_dir) if e.id.startswith("kb-loan-")]
    entry_id, versions = editor.create_entry("贷款", "贷款可以提前还吗？", ["能提前还贷吗", "贷款可以提前还吗？"],
                                             "可以提前还款。\n线上贷款可在手机银行操作。", actor="t")
    assert entry_id == f"kb-loan-{max(numbers) + 1:04d}" and list(versions) == ["knowledge/loans.yml"]
    entry = next(e for e in load_knowledge(editor.knowledge_dir) if e.id == entry_id)
    assert entry.similar == ["能提前还贷吗"] and entry.answer == "可以提前还款。\n线上贷款可在手机银行操作。\n"
    assert "  answer: |\n    可以提前还款。\n" in loans.read_text(encoding="utf-8")  # the file's block style
    new_id, versions = editor.create_entry("养老金", "养老金怎么领？", [], "请到社保网点咨询。", actor="t")
    assert new_id == "kb-0001" and list(versions) == ["knowledge/trainer.yml"]
    assert [a[1] for a in audits] == ["trainer.add_similar_questions", "trainer.create_entry", "trainer.create_entry"]


@pytest.mark.parametrize(("ids", "category", "expected"), [
    ([("kb-loan-0009", "贷款"), ("kb-card-0012", "借记卡")], "贷款", "kb-loan-0010"),
    ([("kb-0001", "借记卡"), ("kb-0004", "外汇")], "理财", "kb-0005"),  # one scheme for the whole base
    ([("kb-loan-0009", "贷款"), ("kb-card-0012", "借记卡")], "理财", "kb-0001"),
    ([("faq-7", "贷款"), ("faq-12", "贷款")], "贷款", "faq-13"),
])
def test_next_entry_id_follows_the_categorys_scheme(ids, category: str, expected: str) -> None:
    assert next_entry_id([{"id": i, "category": c} for i, c in ids], category) == expected


def test_update_entry_keeps_styles_and_checks_the_entry(bundled) -> None:
    editor, _ = bundled
    loans = editor.knowledge_dir / "loans.yml"
    before = loans.read_text(encoding="utf-8")
    editor.update_entry("kb-loan-0002", {"tags": ["消费贷", "线上", "利率"], "answer": "示例e贷最高30万元。"},
                        actor="t", version=file_version(loans))
    after = loans.read_text(encoding="utf-8")
    assert "  tags: [消费贷, 线上, 利率]\n" in after and "  answer: |\n    示例e贷最高30万元。\n" in after
    assert len(after.splitlines()) == len(before.splitlines())  # one answer line for another, nothing else moved
    entry = next(e for e in load_knowledge(editor.knowledge_dir) if e.id == "kb-loan-0002")
    assert entry.answers["wechat"].startswith("示例e贷最高30万")  # untouched fields stay
    with pytest.raises(EditError, match="格式不对"):
        editor.update_entry("kb-loan-0002", {"question": ""}, actor="t", version=file_version(loans))
    with pytest.raises(EditNotFound, match="kb-loan-9999"):
        editor.update_entry("kb-loan-9999", {"answer": "x"}, actor="t", version=file_version(loans))


def test_a_second_trainer_with_a_stale_version_gets_a_conflict_not_an_overwrite(bundled) -> None:
    editor, _ = bundled
    cards = editor.nlu_dir / "cards.yml"
    seen = file_version(cards)  # both trainers opened the file
    editor.set_examples("cancel_card_loss", ["卡找到了，怎么解挂", "我要解除挂失"], actor="agent:1", version=seen)
    first = cards.read_bytes()
    with pytest.raises(EditConflict) as conflict:
        editor.set_examples("cancel_card_loss", ["怎么撤销挂失"], actor="agent:2", version=seen)
    assert "nlu_data/cards.yml" in str(conflict.value) and "重新加载" in str(conflict.value)
    assert cards.read_bytes() == first
    with pytest.raises(EditConflict):  # an additive fix based on an old version is refused too
        editor.add_examples("report_card_loss", ["卡不见了"], actor="agent:2", versions={"nlu_data/cards.yml": seen})


def test_concurrent_additions_to_one_file_all_arrive(bundled) -> None:
    editor, _ = bundled
    texts = [f"第{i}张卡丢了怎么办" for i in range(8)]
    threads = [threading.Thread(target=editor.add_examples, args=("report_card_loss", [t]),
                                kwargs={"actor": "t"}) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    examples = {e.text for e in load_training_data(editor.nlu_dir).examples if e.intent == "report_card_loss"}
    assert set(texts) <= examples


# --- findings -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minibot_data():
    return load_training_data(MINIBOT / "nlu_data")


def levels(findings: list) -> list[tuple[str, str]]:
    return [(f["level"], f["where"]) for f in findings]


def test_example_findings_name_the_other_intent(minibot_data, minibot_assistant) -> None:
    texts = ["查一下余额", "帮我查查卡里的余额", "帮我挂失一下银行卡呀", "你好呀"]
    findings = example_findings(minibot_data, "greet", texts, minibot_assistant)
    assert levels(findings) == [("error", "查一下余额"), ("warning", "帮我查查卡里的余额"),
                                ("warning", "帮我挂失一下银行卡呀"), ("warning", "帮我挂失一下银行卡呀")]
    assert "已是意图 check_balance 的例句" in findings[0]["message"]
    assert "更接近意图 check_balance" in findings[1]["message"]
    assert "与意图 report_card_loss 的例句「帮我挂失一下银行卡」几乎相同" in findings[2]["message"]
    assert "更接近意图 report_card_loss" in findings[3]["message"]  # "你好呀" is a fine greeting: nothing
    own = example_findings(minibot_data, "report_card_loss", ["我要挂失"], minibot_assistant, root=MINIBOT)
    assert [f["message"] for f in own] == ["「我要挂失」已在意图 report_card_loss 中（nlu_data/nlu.yml:15）。"]


class FallingBack:
    """A live model that fell back (or called it out of scope) on every message, quite sure of it."""

    def __init__(self, intent: str) -> None:
        self.intent = intent

    def parse(self, text: str) -> dict:
        return {"intent": {"name": self.intent, "confidence": 0.9}}


@pytest.mark.parametrize("fallback", ["nlu_fallback", "out_of_scope"])
def test_falling_back_is_not_a_closer_intent(minibot_data, fallback: str) -> None:
    assert example_findings(minibot_data, "check_balance", ["我的卡里面还剩几块钱"], FallingBack(fallback)) == []
    rival = example_findings(minibot_data, "check_balance", ["我的卡里面还剩几块钱"], FallingBack("greet"))
    assert "更接近意图 greet" in rival[0]["message"]


def test_findings_name_files_relative_to_the_project(tmp_path: Path) -> None:
    shutil.copytree(MINIBOT / "nlu_data", tmp_path / "nlu_data")
    (tmp_path / "nlu_data" / "more.yml").write_text(
        "rules:\n- rule: thanks\n  steps:\n  - intent: greet\n  - action: utter_thanks\n", encoding="utf-8")
    data = load_training_data(tmp_path / "nlu_data")
    same = example_findings(data, "greet", ["我要挂失"], None, root=tmp_path)
    rule = rule_findings(data, root=tmp_path)
    assert "（nlu_data/nlu.yml:15）" in same[0]["message"] and "（nlu_data/more.yml:2）" in rule[0]["message"]
    assert str(tmp_path) not in same[0]["message"] + rule[0]["message"]


def test_question_findings_find_another_entrys_question() -> None:
    entries = load_knowledge(MINIBOT / "knowledge")
    findings = question_findings(entries, ["补卡要收费吗", "个人购汇额度是多少呢", "理财怎么买"], entry_id="kb-0003")
    assert levels(findings) == [("error", "补卡要收费吗"), ("warning", "个人购汇额度是多少呢")]
    assert "kb-0001" in findings[0]["message"] and "kb-0002" in findings[1]["message"]
    assert question_findings(entries, ["补卡要收费吗"], entry_id="kb-0001") == []  # its own question


def test_response_findings_flag_variants_that_disagree(minibot_data) -> None:
    variants = [{"text": "信用卡账单日为每月5日，还款日为账单日后第20天，可在手机银行设置自动还款，避免逾期产生罚息。"},
                {"text": "网点营业时间为工作日上午九点至下午五点，周末部分网点营业，具体请在地图中查询附近网点信息。"}]
    findings = response_findings(minibot_data, "utter_check_balance", variants)
    assert levels(findings) == [("warning", "response utter_check_balance")]
    assert response_findings(minibot_data, "utter_check_balance", variants[:1]) == []


def test_rule_findings_name_a_missing_response(tmp_path: Path) -> None:
    shutil.copytree(MINIBOT / "nlu_data", tmp_path / "nlu_data")
    (tmp_path / "nlu_data" / "more.yml").write_text(
        "rules:\n- rule: thanks\n  steps:\n  - intent: greet\n  - action: utter_thanks\n", encoding="utf-8")
    data = load_training_data(tmp_path / "nlu_data")
    assert levels(rule_findings(data)) == [("error", "rule thanks")]
    assert rule_findings(data, {"utter_thanks": [{"text": "不客气"}]}) == []


# --- the API --------------------------------------------------------------------------------------------------


@pytest.fixture
def api(minibot_assistant, tmp_path: Path):
    shutil.copytree(MINIBOT / "nlu_data", tmp_path / "nlu_data")
    shutil.copytree(MINIBOT / "knowledge", tmp_path / "knowledge")
    config = minibot_assistant.config
    config = config.model_copy(update={"nlu_data": str(tmp_path / "nlu_data"), "retrieval": config.retrieval.model_copy(
        update={"knowledge": str(tmp_path / "knowledge")})})
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    for role in ("trainer", "admin", "agent", "supervisor"):
        create_agent(database, f"edit-{role}", role, PASSWORD, role=role, groups=["综合服务"])
    client = TestClient(create_app(config, assistant=minibot_assistant, database=database))
    return client, database, tmp_path


def auth(client: TestClient, role: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": f"edit-{role}", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_data_lists_everything_with_its_file_and_version(api) -> None:
    client, _, root = api
    data = client.get("/api/trainer/data", headers=auth(client, "trainer")).json()
    version = hashlib.sha256((root / "nlu_data" / "nlu.yml").read_bytes()).hexdigest()
    greet = next(i for i in data["intents"] if i["name"] == "greet")
    assert greet == {"name": "greet", "examples": ["你好", "您好", "嗨", "在吗", "早上好", "hello"],
                     "file": "nlu_data/nlu.yml", "version": version}
    assert next(i for i in data["intents"] if i["name"] == "report_card_loss")["examples"][-1] == \
        "尾号[6688](card_tail)的卡丢了"  # as written, annotations included
    assert {s["name"] for s in data["synonyms"]} == {"信用卡"} and data["lookups"][0]["name"] == "city"
    assert data["regexes"][0]["examples"] == [r"(?<=卡号末尾)\d{4}"]
    loss = next(r for r in data["responses"] if r["name"] == "utter_report_card_loss")
    assert loss["file"] == "nlu_data/domain.yml" and len(loss["variants"]) == 2
    entry = next(e for e in data["entries"] if e["id"] == "kb-0001")
    assert entry["answers"] == {"wechat": "补卡工本费5元，带身份证到网点办理。"}
    assert entry["file"] == "knowledge/faq.yml"
    assert data["files"]["nlu_data/nlu.yml"] == version


def rows(database: Database, table):
    with database.session() as session:
        return list(session.scalars(select(table)))


def test_a_fix_writes_the_data_marks_the_messages_and_audits(api) -> None:
    client, database, root = api
    headers = auth(client, "trainer")
    texts = ["卡不见了咋办", "卡不見了咋辦"]
    response = client.post("/api/trainer/fixes", headers=headers,
                           json={"texts": texts, "kind": "add_to_intent", "intent": "report_card_loss"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target"] == "report_card_loss" and body["marked"] == 2
    assert body["versions"] == {"nlu_data/nlu.yml": file_version(root / "nlu_data" / "nlu.yml")}
    marks = {m.message_key: m for m in rows(database, ReviewMark)}
    assert set(marks) == {message_key(t) for t in texts}
    mark = marks[message_key("卡不见了咋办")]
    assert mark.status == "fixed" and mark.action["kind"] == "add_to_intent" and mark.actor.startswith("agent:")
    audit = [a for a in rows(database, AuditEntry) if a.action.startswith("trainer.")]
    assert [(a.action, a.target, a.actor) for a in audit] == [("trainer.add_examples", "report_card_loss", mark.actor)]
    examples = load_training_data(root / "nlu_data").examples
    assert {"卡不见了咋办", "卡不見了咋辦"} <= {e.text for e in examples if e.intent == "report_card_loss"}


def test_each_kind_of_fix(api) -> None:
    client, database, root = api
    headers = auth(client, "trainer")
    fixes = [({"texts": ["补卡多少钱啊"], "kind": "add_to_entry", "entry_id": "kb-0001"}, "kb-0001"),
             ({"texts": ["理财产品怎么买", "怎么买理财"], "kind": "new_entry", "category": "理财",
               "answer": "在手机银行“理财”频道购买。"}, "kb-0005"),
             ({"texts": ["我要开户", "怎么开户"], "kind": "new_intent", "intent": "open_account",
               "response": "开户请携带身份证到网点。"}, "open_account"),
             ({"texts": ["帮我订机票"], "kind": "out_of_scope"}, "out_of_scope")]
    for body, target in fixes:
        response = client.post("/api/trainer/fixes", headers=headers, json=body)
        assert response.status_code == 200 and response.json()["target"] == target, response.text
    entries = {e.id: e for e in load_knowledge(root / "knowledge")}
    assert "补卡多少钱啊" in entries["kb-0001"].similar
    assert entries["kb-0005"].question == "理财产品怎么买" and entries["kb-0005"].similar == ["怎么买理财"]
    data = load_training_data(root / "nlu_data")
    assert "utter_open_account" in data.responses and intents_without_responses(data) == []
    assert any(e.intent == "out_of_scope" and e.text == "帮我订机票" for e in data.examples)
    statuses = {m.message_key: m.status for m in rows(database, ReviewMark)}
    assert statuses[message_key("帮我订机票")] == "out_of_scope" and statuses[message_key("我要开户")] == "fixed"
    assert len(statuses) == 6  # each text once
    placed = client.post("/api/trainer/fixes", headers=headers, json={
        "texts": ["我要销户"], "kind": "new_intent", "intent": "close_account", "response": "销户请到网点办理。",
        "file": "nlu_data/nlu.yml"})
    assert sorted(placed.json()["versions"]) == ["nlu_data/domain.yml", "nlu_data/nlu.yml"]  # responses, rules
    assert "- intent: close_account" in (root / "nlu_data" / "nlu.yml").read_text(encoding="utf-8")
    outside = client.post("/api/trainer/fixes", headers=headers, json={
        "texts": ["x"], "kind": "new_intent", "intent": "x", "response": "x", "file": "../config.yml"})
    assert outside.status_code == 422 and not (root / "config.yml").exists()
    refused = client.post("/api/trainer/fixes", headers=headers, json={"texts": ["x"], "kind": "add_to_intent"})
    assert refused.status_code == 422
    missing = client.post("/api/trainer/fixes", headers=headers,
                          json={"texts": ["x"], "kind": "add_to_entry", "entry_id": "kb-9999"})
    assert missing.status_code == 404 and "kb-9999" in missing.json()["detail"]
    assert len(rows(database, ReviewMark)) == 7  # the placed fix's text; a refused fix marks nothing


def test_two_trainers_editing_one_file_the_second_gets_409(api) -> None:
    client, _, root = api
    first, second = auth(client, "trainer"), auth(client, "admin")
    seen = client.get("/api/trainer/data", headers=first).json()["files"]["nlu_data/nlu.yml"]
    saved = client.put("/api/trainer/intents/greet", headers=first,
                       json={"examples": ["你好", "您好", "嗨"], "version": seen})
    assert saved.status_code == 200 and saved.json()["versions"]["nlu_data/nlu.yml"] != seen
    conflict = client.put("/api/trainer/synonyms/信用卡", headers=second,
                          json={"examples": ["信用咔"], "version": seen})
    assert conflict.status_code == 409
    assert "nlu_data/nlu.yml" in conflict.json()["detail"] and "重新加载" in conflict.json()["detail"]
    assert load_training_data(root / "nlu_data").synonyms == {"信用咔": "信用卡", "credit card": "信用卡"}
    current = saved.json()["versions"]["nlu_data/nlu.yml"]
    retried = client.put("/api/trainer/synonyms/信用卡", headers=second,
                         json={"examples": ["信用咔"], "version": current})
    assert retried.status_code == 200


def test_put_routes_save_responses_entries_lookups_and_regexes(api) -> None:
    client, _, root = api
    headers = auth(client, "trainer")
    files = client.get("/api/trainer/data", headers=headers).json()["files"]
    domain, nlu, faq = files["nlu_data/domain.yml"], files["nlu_data/nlu.yml"], files["knowledge/faq.yml"]
    variants = [{"text": "您好！"}, {"text": "您好，微信用户", "channel": "wechat"}]
    response = client.put("/api/trainer/responses/utter_greet", headers=headers,
                          json={"variants": variants, "version": domain})
    assert response.status_code == 200
    saved = client.put("/api/trainer/lookups/city", headers=headers,
                       json={"examples": ["北京", "深圳"], "version": nlu})
    regex = client.put("/api/trainer/regexes/card_tail", headers=headers,
                       json={"examples": [r"尾号(\d{4})"], "version": saved.json()["versions"]["nlu_data/nlu.yml"]})
    entry = client.put("/api/trainer/entries/kb-0003", headers=headers,
                       json={"answer": "普卡首年免年费。", "tags": ["年费"], "version": faq})
    assert (saved.status_code, regex.status_code, entry.status_code) == (200, 200, 200), entry.text
    data = load_training_data(root / "nlu_data")
    assert data.responses["utter_greet"][1] == {"text": "您好，微信用户", "channel": "wechat"}
    assert data.lookups["city"] == ["北京", "深圳"] and data.regexes["card_tail"] == [r"尾号(\d{4})"]
    kb = {e.id: e for e in load_knowledge(root / "knowledge")}
    assert kb["kb-0003"].answer == "普卡首年免年费。" and kb["kb-0003"].tags == ["年费"]
    assert kb["kb-0003"].similar == ["信用卡要交年费吗", "年费可以免吗", "怎么免信用卡年费"]


def test_findings_endpoint_checks_without_writing(api) -> None:
    client, _, root = api
    headers = auth(client, "trainer")
    before = (root / "nlu_data" / "nlu.yml").read_bytes()
    examples = client.post("/api/trainer/findings", headers=headers,
                           json={"kind": "examples", "intent": "greet", "texts": ["查一下余额"]}).json()["findings"]
    questions = client.post("/api/trainer/findings", headers=headers,
                            json={"kind": "questions", "texts": ["年费可以免吗"]}).json()["findings"]
    response = client.post("/api/trainer/findings", headers=headers,
                           json={"kind": "response", "name": "utter_greet", "variants": [{"text": "您好"}]}).json()
    assert [f["level"] for f in examples] == ["error"] and "check_balance" in examples[0]["message"]
    assert "（nlu_data/nlu.yml:" in examples[0]["message"] and str(root) not in examples[0]["message"]
    assert [f["level"] for f in questions] == ["error"] and "kb-0003" in questions[0]["message"]
    assert response == {"findings": []}
    assert (root / "nlu_data" / "nlu.yml").read_bytes() == before


def test_suggestions_for_a_group_of_messages(api) -> None:
    client, _, _ = api
    headers = auth(client, "trainer")
    group = client.post("/api/trainer/suggestions", headers=headers, json={"texts": ["我卡里还剩多少钱", "查查余额"]})
    assert group.status_code == 200
    body = group.json()
    assert body["intents"][0]["name"] == "check_balance" and body["intents"][0]["score"] > 0.5
    assert body["examples"][0] == {**body["examples"][0], "text": "我卡里还有多少钱", "intent": "check_balance"}
    assert body["examples"][0]["source"].startswith("nlu_data/nlu.yml:")
    fee = client.post("/api/trainer/suggestions", headers=headers, json={"texts": ["补办银行卡要多少钱"]}).json()
    assert fee["entries"][0]["id"] == "kb-0001"


EDIT_ROUTES = [("GET", "/api/trainer/data"), ("POST", "/api/trainer/fixes"), ("POST", "/api/trainer/findings"),
               ("POST", "/api/trainer/suggestions"),
               ("PUT", "/api/trainer/intents/greet"), ("PUT", "/api/trainer/responses/utter_greet"),
               ("PUT", "/api/trainer/entries/kb-0001"), ("PUT", "/api/trainer/synonyms/信用卡"),
               ("PUT", "/api/trainer/lookups/city"), ("PUT", "/api/trainer/regexes/card_tail")]


def test_only_trainers_and_admins_may_edit(api) -> None:
    client, database, root = api
    before = {p: p.read_bytes() for p in (root / "nlu_data").iterdir()}
    body = {"texts": ["我要挂失"], "kind": "out_of_scope", "examples": ["x"], "version": None}
    for method, path in EDIT_ROUTES:
        assert client.request(method, path, json=body).status_code == 401, path
        for role in ("agent", "supervisor"):
            refused = client.request(method, path, json=body, headers=auth(client, role))
            assert refused.status_code == 403 and "训练" in refused.json()["detail"], (role, path)
    assert {p: p.read_bytes() for p in (root / "nlu_data").iterdir()} == before
    assert rows(database, ReviewMark) == []
