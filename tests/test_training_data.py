from __future__ import annotations

from pathlib import Path

import pytest

from bot.retrieval.knowledge import KnowledgeError, load_knowledge
from bot.training_data import TrainingDataError, load_training_data, parse_file


def write(tmp_path: Path, text: str, name: str = "data.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_intents_entities_synonyms_regexes_lookups(tmp_path: Path) -> None:
    path = write(tmp_path, """
version: "3.1"
nlu:
- intent: report_card_loss
  examples: |
    - 尾号[6688](card_tail)的卡丢了
    - 幫我掛失[信用咔]{"entity": "card_type", "value": "信用卡"}
- synonym: 信用卡
  examples: |
    - credit card
- regex: card_tail
  examples: |
    - (?<=尾号)\\d{4}
- lookup: city
  examples: |
    - 北京
""")
    data = parse_file(path)
    first, second = data.examples
    assert first.text == "尾号6688的卡丢了"
    assert (first.entities[0].entity, first.entities[0].value) == ("card_tail", "6688")
    assert first.text[first.entities[0].start : first.entities[0].end] == "6688"
    assert second.text == "幫我掛失信用咔" and second.entities[0].value == "信用卡"
    assert data.synonyms == {"credit card": "信用卡"}
    assert data.regexes == {"card_tail": ["(?<=尾号)\\d{4}"]}
    assert data.lookups == {"city": ["北京"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nlu:\n- intent: a\n  examples: x: y\n", "data.yml:3: YAML syntax error: mapping values are not allowed"),
        ("nlu:\n- intent: a\n  examples: |\n    - 你好\n    没有横线\n",
         "data.yml:5: intent 'a': example lines must start"),
        ("nlu:\n- intent: a\n", "data.yml:2: intent 'a' needs 'examples: |'"),
        ("nlu:\n- regex: tail\n  examples: |\n    - ([0-9]\n", "data.yml:4: regex 'tail': invalid pattern"),
        ("nlus:\n- intent: a\n", "data.yml:1: unknown top-level key 'nlus'"),
        ("responses:\n  utter_x: hello\n", "data.yml:2: response 'utter_x' must be a non-empty list"),
        ("nlu:\n- intent: a\n  synonym: b\n  examples: |\n    - x\n", "data.yml:2: each nlu block needs exactly one"),
    ],
)
def test_malformed_files_name_file_line_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, text)
    with pytest.raises(TrainingDataError) as error:
        load_training_data(tmp_path)
    assert expected in str(error.value)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no training data files"):
        load_training_data(tmp_path)


def test_knowledge_errors_name_the_entry(tmp_path: Path) -> None:
    write(tmp_path, "entries:\n- id: a\n  category: c\n  question: q\n  answer: x\n- id: b\n  category: c\n"
                    "  question: q2\n", "kb.yml")
    with pytest.raises(KnowledgeError, match=r"kb.yml:6: invalid knowledge entry: answer: Field required"):
        load_knowledge(tmp_path)


def test_duplicate_knowledge_ids_are_refused(tmp_path: Path) -> None:
    entry = "- id: a\n  category: c\n  question: q\n  answer: x\n"
    write(tmp_path, "entries:\n" + entry, "a.yml")
    write(tmp_path, "entries:\n" + entry, "b.yml")
    with pytest.raises(KnowledgeError, match="duplicate id 'a'"):
        load_knowledge(tmp_path)


def test_bundled_bot_data_is_complete(project_root: Path) -> None:
    data = load_training_data(project_root / "nlu_data")
    counts: dict[str, int] = {}
    for example in data.examples:
        counts[example.intent] = counts.get(example.intent, 0) + 1
    assert len(counts) >= 40
    assert min(counts.values()) >= 15, {k: v for k, v in counts.items() if v < 15}
    assert all(f"utter_{intent}" in data.responses for intent in counts)
    assert len(load_knowledge(project_root / "knowledge")) >= 200


def test_validate_warns_when_variants_of_one_answer_say_different_things() -> None:
    from bot.training_data import TrainingData
    from bot.validate import divergent_variants

    data = TrainingData(responses={
        "utter_loan_repayment": [  # two sub-topics: which one a customer gets is chance
            {"text": "贷款按月从还款卡自动扣款，请在还款日前一天存足月供。"
                     "提前还款可在手机银行预约，支持部分或全部提前还款。"},
            {"text": "贷款结清后，可在手机银行下载结清证明；房贷结清后需带结清证明到不动产登记中心办理抵押注销。"}],
        "utter_transfer_limit": [  # the same answer in other words
            {"text": "手机银行转账默认单笔限额5万元、日累计20万元，使用U盾或手机盾可以提高转账限额，在安全中心调整。"},
            {"text": "转账限额：手机银行默认单笔5万元，日累计20万元；"
                     "用U盾或手机盾可提高限额，请到安全中心调整转账限额。"}],
        "utter_thanks": [{"text": "不客气，很高兴能帮到您！"}, {"text": "不用谢，这是小智应该做的～"}],
        "utter_branch_hours": [  # a channel's own variant is compared only with that channel's
            {"text": "大部分网点营业时间为周一至周五9:00-17:00，部分网点周六、周日9:00-16:00营业，节假日以公告为准。"},
            {"text": "网点营业时间：周一至周五9:00-17:00，部分网点周末营业。回复“网点”查看附近网点地址和电话。",
             "channel": "wechat"}],
    })
    warnings = divergent_variants(data)
    assert len(warnings) == 1 and "utter_loan_repayment" in warnings[0]
