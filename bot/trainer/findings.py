"""What the validator would say about a proposed change, before it is written: shown as the trainer types.

Each check compares the proposal with the current data (and, for examples, asks the live model), reusing
`bot.validate`'s checks where they exist; and suggestions for a group of inbox messages. Nothing here writes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from typing_extensions import TypedDict  # pydantic (the API's answers) needs this one before Python 3.12

from bot.nlu.classifier import OOS_INTENTS
from bot.nlu.normalise import normalise
from bot.retrieval.hybrid import char_bigrams, dice
from bot.retrieval.knowledge import KnowledgeEntry
from bot.training_data import ENTITY_ANNOTATION, TrainingData
from bot.validate import BUILT_IN_INTENTS, NEAR_DUPLICATE, divergent_variants, has_response

CLOSER_CONFIDENCE = 0.5  # the live model puts a proposed example in another intent at least this sure
SIMILAR_EXAMPLE = 0.3  # character-bigram overlap (Dice) from which an existing example is worth showing


class Finding(TypedDict):
    level: Literal["error", "warning"]
    message: str  # for the trainer, in Chinese
    where: str  # what the finding is about: the proposed text, or "response utter_x", "rule ... (file:line)"


class Parser(Protocol):
    def parse(self, text: str) -> Mapping[str, Any]: ...


def example_findings(data: TrainingData, intent: str, texts: list[str], model: Parser | None, *,
                     root: Path | None = None) -> list[Finding]:
    """For examples proposed for `intent`: in another intent already (error), parsed by the live model as
    another intent (warning), almost the same as an existing example (warning). Files are named relative to
    `root` (the project's folder), never with the server's absolute path."""
    findings: list[Finding] = []
    for text in texts:
        plain_text = ENTITY_ANNOTATION.sub(lambda m: m.group("text"), text)
        findings += _same_example(data, intent, text, normalise(plain_text), root)
        if not any(f["where"] == text and f["level"] == "error" for f in findings):
            findings += _near_examples(data, intent, text, normalise(plain_text), root)
            findings += _closer_intent(model, intent, text, plain_text)
    return findings


def shown_source(source: str, root: Path | None) -> str:
    """A "file:line" as the trainer sees it: the file relative to `root` when it lies inside it."""
    file, colon, line = source.rpartition(":")
    if not colon or not line.isdigit():
        file, line = source, ""
    path = Path(file)
    if root is not None and path.is_absolute() and path.is_relative_to(root):
        file = path.relative_to(root).as_posix()
    return f"{file}:{line}" if line else file


def _same_example(data: TrainingData, intent: str, text: str, key: str, root: Path | None) -> list[Finding]:
    same = [e for e in data.examples if normalise(e.text) == key]
    other = [e for e in same if e.intent != intent]
    if other:
        where = shown_source(other[0].source, root)
        return [_finding("error", f"「{text}」已是意图 {other[0].intent} 的例句（{where}），同一句话不能属于两个意图。",
                         text)]
    return ([_finding("warning", f"「{text}」已在意图 {intent} 中（{shown_source(same[0].source, root)}）。", text)]
            if same else [])


def _near_examples(data: TrainingData, intent: str, text: str, key: str, root: Path | None) -> list[Finding]:
    bigrams = char_bigrams(key)
    if len(bigrams) <= 2:  # too short for a meaningful overlap
        return []
    for example in data.examples:
        other = normalise(example.text)
        if other != key and dice(bigrams, char_bigrams(other)) >= NEAR_DUPLICATE:
            owner = "本意图" if example.intent == intent else f"意图 {example.intent} "
            where = shown_source(example.source, root)
            return [_finding("warning", f"「{text}」与{owner}的例句「{example.text}」几乎相同（{where}）。", text)]
    return []


def _closer_intent(model: Parser | None, intent: str, text: str, plain_text: str) -> list[Finding]:
    """The live model's intent for the text, when it is another one; falling back ("none fits") is no rival."""
    if model is None:
        return []
    predicted = model.parse(plain_text).get("intent") or {}
    name, confidence = predicted.get("name"), float(predicted.get("confidence") or 0.0)
    if name and name != intent and name not in OOS_INTENTS and confidence >= CLOSER_CONFIDENCE:
        return [_finding("warning", f"「{text}」更接近意图 {name}（当前模型置信度 {confidence:.2f}），"
                                    f"加入 {intent} 可能让两个意图互相混淆。", text)]
    return []


def question_findings(entries: list[KnowledgeEntry], texts: list[str], entry_id: str | None) -> list[Finding]:
    """For questions proposed for an entry (`entry_id`, or None for a new one): the standard or a similar
    question of another entry (error), or almost one (warning)."""
    others = [(e, q, normalise(q)) for e in entries if e.id != entry_id for q in e.questions]
    findings: list[Finding] = []
    for text in texts:
        key = normalise(text)
        same = next((e for e, _, k in others if k == key), None)
        if same is not None:
            findings.append(_finding("error", f"「{text}」已是知识条目 {same.id}（{same.question}）的问法。", text))
            continue
        bigrams = char_bigrams(key)
        near = next(((e, q) for e, q, k in others if len(bigrams) > 2 and dice(bigrams, char_bigrams(k))
                     >= NEAR_DUPLICATE), None)
        if near is not None:
            findings.append(_finding("warning", f"「{text}」与知识条目 {near[0].id} 的问法「{near[1]}」几乎相同。",
                                     text))
    return findings


def response_findings(data: TrainingData, name: str, variants: list[dict[str, Any]], *,
                      root: Path | None = None) -> list[Finding]:
    """For a response's proposed variants: variants that answer different things (`bot validate`'s check),
    and rules naming a response that would not exist."""
    proposed = TrainingData(responses={name: variants})
    findings = [_finding("warning", f"回复 {name} 的几条内容说的不是同一件事：回复会随机选用其中一条，"
                                    "同一个问题可能得到不同的答案。请让每条都完整回答同一个问题。",
                         f"response {name}") for _ in divergent_variants(proposed)]
    return findings + rule_findings(data, {name: variants}, root=root)


def rule_findings(data: TrainingData, responses: dict[str, list[dict[str, Any]]] | None = None, *,
                  root: Path | None = None) -> list[Finding]:
    """Rules that name a response that does not exist (with `responses` proposed on top of the data's): what
    `bot validate` reports as `unknown_rule_actions`."""
    merged = TrainingData(responses={**data.responses, **(responses or {})}, rules=data.rules)
    return [_finding("error", f"规则 {rule['rule']} 使用的回复 {action} 不存在，机器人将无法回答。"
                              f"请新建该回复或修改规则（{shown_source(str(rule.get('source', '')), root)}）。",
                     f"rule {rule['rule']}")
            for rule in merged.rules for step in rule.get("steps", [])
            if (action := str(step.get("action", ""))).startswith("utter_") and not has_response(merged, action)]


def suggestions(data: TrainingData, texts: list[str], model: Parser | None, *, top: int = 3,
                root: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """For a group of inbox messages: the intents and knowledge entries the live model ranks highest (mean
    confidence over the group), and the existing examples most like the messages."""
    intents: dict[str, float] = defaultdict(float)
    entries: dict[str, dict[str, Any]] = {}
    for text in texts:
        parsed = model.parse(text) if model is not None else {}
        for item in parsed.get("intent_ranking") or []:
            if item.get("name") not in BUILT_IN_INTENTS:
                intents[str(item["name"])] += float(item.get("confidence") or 0.0) / len(texts)
        for hit in (parsed.get("retrieval") or {}).get("alternatives") or []:
            entry = entries.setdefault(hit["id"], {"id": hit["id"], "question": hit["question"], "score": 0.0})
            entry["score"] += float(hit["confidence"]) / len(texts)
    ranked = sorted(intents.items(), key=lambda pair: -pair[1])[:top]
    return {"intents": [{"name": name, "score": round(score, 4)} for name, score in ranked],
            "entries": [{**e, "score": round(e["score"], 4)}
                        for e in sorted(entries.values(), key=lambda e: -e["score"])[:top]],
            "examples": _similar_examples(data, texts, top * 2, root)}


def _similar_examples(data: TrainingData, texts: list[str], limit: int, root: Path | None) -> list[dict[str, Any]]:
    wanted = [char_bigrams(normalise(t)) for t in texts]
    scored = [(max(dice(w, char_bigrams(normalise(e.text))) for w in wanted), e) for e in data.examples]
    best = sorted((pair for pair in scored if pair[0] >= SIMILAR_EXAMPLE), key=lambda pair: -pair[0])[:limit]
    return [{"text": e.text, "intent": e.intent, "similarity": round(score, 4),
             "source": shown_source(e.source, root)}
            for score, e in best]


def _finding(level: Literal["error", "warning"], message: str, where: str) -> Finding:
    return {"level": level, "message": message, "where": where}
