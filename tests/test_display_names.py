"""Issue 13: intents, slots and forms may carry a `display_name` in nlu_data - what agents read instead of
`report_card_loss`. Where a Rasa user would write it (the nlu block's `metadata:`, the domain's intents, a slot,
a form), what Rasa ignores; a project without it still loads; a wrong one is an error naming the line; the
trained model keeps them in metadata.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.config import load_config
from bot.model import TrainedModel
from bot.training_data import DisplayNames, TrainingDataError, load_training_data
from bot.validate import rasa_checks

MOODBOT = Path(__file__).parent / "fixtures" / "rasa_moodbot"
CONFIG = load_config(Path(__file__).parents[1] / "config.yml", environ={})

NLU = """version: "3.1"
nlu:
- intent: report_card_loss
  metadata:
    display_name: 挂失银行卡
  examples: |
    - 我的卡丢了
    - 银行卡不见了
- intent: check_balance
  examples: |
    - 查余额
    - 卡里还有多少钱
"""
DOMAIN = """version: "3.1"
intents:
- check_balance:
    display_name: 查询余额
- report_card_loss
slots:
  card_tail:
    type: text
    display_name: 卡号后四位
    mappings:
    - type: from_text
forms:
  card_loss_form:
    display_name: 挂失银行卡
    required_slots: [card_tail]
responses:
  utter_ask_card_tail:
  - text: 请告诉我卡号后四位
"""


def write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yml").write_text(text, "utf-8")
    return folder


def test_display_names_from_the_nlu_block_the_domains_intents_slots_and_forms(tmp_path: Path) -> None:
    data = load_training_data(write(tmp_path / "data", nlu=NLU, domain=DOMAIN))
    assert data.display_names == DisplayNames(intents={"report_card_loss": "挂失银行卡", "check_balance": "查询余额"},
                                              slots={"card_tail": "卡号后四位"}, forms={"card_loss_form": "挂失银行卡"})
    assert "display_name" not in data.slots["card_tail"]  # for people, not part of the slot Rasa sees
    assert data.forms == {"card_loss_form": ["card_tail"]}
    assert "display_name" not in json.dumps(data.as_rasa_domain(), ensure_ascii=False)


def test_a_rasa_project_without_display_names_loads_and_has_none() -> None:
    data = load_training_data(MOODBOT)
    assert data.intents and data.display_names == DisplayNames()


def test_a_rasa_project_with_display_names_in_its_domain(tmp_path: Path) -> None:
    project = tmp_path / "moodbot"
    shutil.copytree(MOODBOT, project)
    domain = (project / "domain.yml").read_text("utf-8").replace("  - mood_great\n",
                                                                 "  - mood_great:\n      display_name: 心情很好\n")
    (project / "domain.yml").write_text(domain, "utf-8")
    data = load_training_data(project)
    assert data.display_names.intents == {"mood_great": "心情很好"} and "mood_great" in data.domain_intents


@pytest.mark.parametrize("shown", ["''", "[挂失]", "3"])
def test_a_display_name_must_be_text(tmp_path: Path, shown: str) -> None:
    broken = NLU.replace("display_name: 挂失银行卡", f"display_name: {shown}")
    with pytest.raises(TrainingDataError, match=r"nlu\.yml:\d+: intent 'report_card_loss': display_name must be"):
        load_training_data(write(tmp_path / "data", nlu=broken))


def test_validation_accepts_display_names(tmp_path: Path) -> None:
    data = load_training_data(write(tmp_path / "data", nlu=NLU, domain=DOMAIN))
    errors, warnings = rasa_checks(data, CONFIG)
    assert not [p for p in errors + warnings if "display_name" in p or "card_tail" in p], errors + warnings


def test_the_trained_model_keeps_them_in_its_metadata(bundled_assistant) -> None:
    model: TrainedModel = bundled_assistant.model
    assert model.display_names.intents["report_card_loss"] == "挂失银行卡"
    assert TrainedModel(model.nlu, None, model.data, {}).display_names == DisplayNames()  # an older model: none
    stored = DisplayNames.from_json(model.metadata["display_names"])
    assert stored == model.display_names
