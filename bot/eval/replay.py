"""Replay evaluation: real customer messages through the real bot, one fresh conversation each.

Each message goes through `ConversationService` exactly as the REST webhook sends it (channel `rest`, a new
sender, a temporary SQLite database, hand-over to the assistant desk switched on), and the outcome is read from what
the bot did, by the `source` of its replies:

- `handoff`: a reply with source `handoff` (the conversation was queued for a person) or an offer of one
  (`utter_offer_human…`, `offer_human…`);
- `out_of_scope`: a reply whose source starts with `utter_out_of_scope` or `out_of_scope`;
- `answer`: a knowledge entry's answer (source = the entry id) or what an intent's rule did (a response, a custom
  action, a form's first question: any other source), read as an answer by the parsed intent;
- `clarify`: a "您是不是想问…" menu (source `clarify`) or another clarifying question (`utter_clarify…`,
  `clarify…`);
- `fallback`: the fallback response (`dialogue.fallback_response`), a request to rephrase, or no reply.

When replies of several kinds come in one turn, the first kind in that order wins. A labelled message is `good`
when the outcome matches its label (see `judge`), and a `wrong answer` when the bot answered directly but not
with a right id. The precise rules are in bench/replay/README.md.
"""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.dialogue.service import ConversationService, Inbound, Limits, MessageRejected
from bot.eval.datasets import DatasetError
from bot.handoff.desk import AgentDesk
from bot.handoff.handover import Handover
from bot.security.limits import MemoryLimiter
from bot.security.masking import mask_text
from bot.storage import ConversationStore, Database

OUTCOMES = ("answer", "clarify", "out_of_scope", "handoff", "fallback")
LABEL_KINDS = ("answer", "clarify", "out_of_scope", "handoff")
HALVES = ("tune", "report")
HANDOFF_SOURCES = ("handoff", "utter_offer_human", "offer_human")  # prefixes, as all the tuples below
OUT_OF_SCOPE_SOURCES = ("utter_out_of_scope", "out_of_scope")
CLARIFY_SOURCES = ("clarify", "utter_clarify")
REPHRASE_SOURCES = ("utter_ask_rephrase",)
COUNT_KEYS = {"answer": "answered", "clarify": "clarified", "handoff": "handed_over",
              "out_of_scope": "out_of_scope", "fallback": "fallback"}
REPLAY_CHANNEL = "rest"
LABEL_HEADER = ("file", "line", "label")


@dataclass(frozen=True)
class Label:
    kind: str  # one of LABEL_KINDS
    ids: frozenset[str] = frozenset()  # for answers: each intent or knowledge entry id that is a right answer

    @classmethod
    def parse(cls, text: str) -> Label:
        """`answer:<id>[|<id>…]`, `clarify`, `out_of_scope` or `handoff`; ValueError otherwise."""
        kind, _, ids = text.strip().partition(":")
        if kind not in LABEL_KINDS:
            raise ValueError(f"label must start with one of {', '.join(LABEL_KINDS)}, got {text!r}")
        names = frozenset(i.strip() for i in ids.split("|") if i.strip())
        if (kind == "answer") != bool(names):
            raise ValueError(f"only answer labels name ids (answer:<intent or knowledge id>), got {text!r}")
        return cls(kind, names)

    def __str__(self) -> str:
        return f"answer:{'|'.join(sorted(self.ids))}" if self.kind == "answer" else self.kind


@dataclass(frozen=True)
class ReplayItem:
    text: str
    ref: str  # where the message comes from: `pairs/bq/dev.tsv:12:a` or `messages.txt:3`
    label: Label | None = None
    half: str | None = None


@dataclass(frozen=True)
class Observation:
    """What the bot did with one message."""

    outcome: str  # one of OUTCOMES
    intent: str | None
    confidence: float | None  # the parsed intent's
    knowledge_id: str | None  # the entry that answered (answers from the knowledge base only)
    knowledge_top: str | None  # retrieval's top hit, whatever the bot did with it
    knowledge_confidence: float | None  # and its confidence
    options: tuple[str, ...]  # intents / knowledge ids a clarification menu offered
    reply: str

    @property
    def answer_id(self) -> str | None:
        if self.outcome != "answer":
            return None
        return self.knowledge_id or self.intent


@dataclass(frozen=True)
class MessageResult:
    item: ReplayItem
    observation: Observation
    good: bool | None  # None: no label
    wrong_answer: bool | None

    def as_json(self) -> dict[str, Any]:
        o = self.observation
        return {"ref": self.item.ref, "half": self.item.half, "text": mask_text(self.item.text),
                "label": str(self.item.label) if self.item.label else None, "outcome": o.outcome,
                "intent": o.intent, "confidence": o.confidence, "knowledge_id": o.knowledge_id,
                "knowledge_top": o.knowledge_top, "knowledge_confidence": o.knowledge_confidence,
                "options": list(o.options),
                "good": self.good, "wrong_answer": self.wrong_answer, "reply": mask_text(o.reply)}


# --- reading the messages -----------------------------------------------------------------------------------


def read_items(file: Path, data_root: Path, labels: Path | None = None, half: str | None = None) -> list[ReplayItem]:
    """The messages to replay: a labels TSV (`file<TAB>line<TAB>[column<TAB>]label[<TAB>half]`, texts read
    from the data files it references under `data_root`), or a text file with one message a line, labelled by
    `labels` (`line<TAB>label[<TAB>half]`, line = 1-based line in `file`) when given. `half` keeps one half."""
    if _is_labels_tsv(file):
        if labels is not None:
            raise DatasetError(f"{file} holds labels already; --labels is for a plain text file of messages")
        items = _labelled_items(file, data_root)
    else:
        items = _text_items(file, labels)
    if half is not None:
        if half not in HALVES:
            raise DatasetError(f"half must be one of {', '.join(HALVES)}, got {half!r}")
        if any(i.half is None for i in items):
            raise DatasetError(f"{labels or file}: --half needs a 'half' column on every label")
        items = [i for i in items if i.half == half]
    return items


def _is_labels_tsv(path: Path) -> bool:
    lines = _read_lines(path)
    return bool(lines) and tuple(lines[0].split("\t")[:2]) == LABEL_HEADER[:2]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return path.read_text("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _label_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    lines = _read_lines(path)
    if not lines:
        raise DatasetError(f"{path}: empty file")
    reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{path}:1: header lacks {', '.join(missing)} (has {reader.fieldnames})")
    for number, row in enumerate(reader, start=2):
        yield number, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _parse_label(row: dict[str, str], path: Path, number: int) -> tuple[Label, str | None]:
    try:
        label = Label.parse(row["label"])
    except ValueError as e:
        raise DatasetError(f"{path}:{number}: {e}") from e
    half = row.get("half") or None
    if half is not None and half not in HALVES:
        raise DatasetError(f"{path}:{number}: half must be one of {', '.join(HALVES)}, got {half!r}")
    return label, half


def _labelled_items(path: Path, data_root: Path) -> list[ReplayItem]:
    files: dict[str, list[str]] = {}
    items = []
    for number, row in _label_rows(path, LABEL_HEADER):
        label, half = _parse_label(row, path, number)
        source = row["file"]
        if source not in files:
            files[source] = _read_lines(data_root / source)
        text = _field(files[source], row, f"{path}:{number}", data_root / source)
        ref = f"{source}:{row['line']}" + (f":{row['column']}" if row.get("column") else "")
        items.append(ReplayItem(text, ref, label, half))
    return items


def _field(lines: list[str], row: dict[str, str], where: str, data_file: Path) -> str:
    """The referenced message: column a (first field) or b (second) of the 1-based line."""
    if not row["line"].isdigit() or not 2 <= int(row["line"]) <= len(lines):
        raise DatasetError(f"{where}: line {row['line']!r} is not a data line of {data_file}")
    column = row.get("column") or "a"
    if column not in ("a", "b"):
        raise DatasetError(f"{where}: column must be a or b, got {column!r}")
    fields = lines[int(row["line"]) - 1].split("\t")
    index = "ab".index(column)
    text = fields[index].replace("\ufeff", "").strip() if index < len(fields) else ""
    if not text:
        raise DatasetError(f"{where}: {data_file}:{row['line']} has no text in column {column}")
    return text


def _text_items(path: Path, labels: Path | None) -> list[ReplayItem]:
    lines = _read_lines(path)
    if labels is None:
        return [ReplayItem(text.strip(), f"{path.name}:{n}") for n, text in enumerate(lines, start=1) if text.strip()]
    items = []
    for number, row in _label_rows(labels, ("line", "label")):
        label, half = _parse_label(row, labels, number)
        line = row["line"]
        if not line.isdigit() or not 1 <= int(line) <= len(lines) or not lines[int(line) - 1].strip():
            raise DatasetError(f"{labels}:{number}: line {line!r} is not a message line of {path}")
        items.append(ReplayItem(lines[int(line) - 1].strip(), f"{path.name}:{line}", label, half))
    return items


# --- replaying ----------------------------------------------------------------------------------------------


class Replayer:
    """Answers each message in a new conversation of a `ConversationService` over a throw-away database."""

    def __init__(self, assistant: Assistant, config: BotConfig, database_url: str) -> None:
        self.config = config
        self.database = Database(database_url)
        store = ConversationStore(self.database, security=config.security)
        handover = Handover(AgentDesk(self.database, config.handoff), config.handoff)
        unlimited = Limits(MemoryLimiter(), per_sender=10**9, per_ip=10**9)
        self.service = ConversationService(assistant, store, handoff=handover, limits=unlimited)
        retriever = assistant.model.retriever
        self.questions = {e.question: e.id for e in retriever.entries} if retriever is not None else {}
        self.knowledge_ids = frozenset(self.questions.values())
        self._count = 0

    def observe(self, text: str) -> Observation:
        self._count += 1
        inbound = Inbound(channel=REPLAY_CHANNEL, sender=f"replay-{self._count:06d}", text=text, message_id=None)
        try:
            turn = self.service.handle(inbound)
        except MessageRejected as e:
            return Observation("fallback", None, None, None, None, None, (), str(e))
        events = self.service.store.events(turn.conversation_id)
        parse = next((e.get("parse_data") or {} for e in events if e["event"] == "user"), {})
        return self.classify(turn.replies, parse)

    def classify(self, replies: list[dict[str, Any]], parse: dict[str, Any]) -> Observation:
        return classify_turn(replies, parse, self.questions, self.knowledge_ids,
                             self.config.dialogue.fallback_response)

    def close(self) -> None:
        self.database.dispose()


@contextmanager
def replayer(assistant: Assistant, config: BotConfig) -> Iterator[Replayer]:
    with tempfile.TemporaryDirectory(prefix="bot-replay-") as directory:
        running = Replayer(assistant, config, f"sqlite:///{Path(directory) / 'replay.db'}")
        try:
            yield running
        finally:
            running.close()


def classify_turn(replies: list[dict[str, Any]], parse: dict[str, Any], questions: dict[str, str],
                  knowledge_ids: frozenset[str], fallback_response: str) -> Observation:
    """The outcome of one turn from its replies' sources (see the module docstring)."""
    sources = [str(r.get("source") or "") for r in replies]
    intent = (parse.get("intent") or {}).get("name")
    confidence = (parse.get("intent") or {}).get("confidence")
    top = (parse.get("retrieval") or {}).get("top") or {}
    knowledge_id = next((s for s in sources if s in knowledge_ids), None)
    outcome = _outcome(sources, knowledge_ids, fallback_response)
    options = _menu_options(replies, questions) if outcome == "clarify" else ()
    return Observation(outcome=outcome, intent=intent, confidence=_rounded(confidence),
                       knowledge_id=knowledge_id if outcome == "answer" else None, knowledge_top=top.get("id"),
                       knowledge_confidence=_rounded(top.get("confidence")), options=options,
                       reply="\n".join(str(r.get("text") or "") for r in replies))


def _outcome(sources: list[str], knowledge_ids: frozenset[str], fallback_response: str) -> str:
    def has(prefixes: tuple[str, ...]) -> bool:
        return any(s.startswith(prefixes) for s in sources)

    fallbacks = (fallback_response, *REPHRASE_SOURCES)
    if has(HANDOFF_SOURCES):
        return "handoff"
    if has(OUT_OF_SCOPE_SOURCES):
        return "out_of_scope"
    if any(s in knowledge_ids or not s.startswith((*CLARIFY_SOURCES, *fallbacks)) for s in sources):
        return "answer"
    if has(CLARIFY_SOURCES):
        return "clarify"
    return "fallback"


def _menu_options(replies: list[dict[str, Any]], questions: dict[str, str]) -> tuple[str, ...]:
    """The ids a menu offers: `/intent` payloads, and knowledge entries by their standard question."""
    options = []
    for reply in replies:
        for button in reply.get("buttons") or []:
            payload, title = str(button.get("payload") or ""), str(button.get("title") or "")
            if payload.startswith("/"):
                options.append(payload[1:].split("{", 1)[0])
            elif payload in questions or title in questions:
                options.append(questions.get(payload) or questions[title])
    return tuple(dict.fromkeys(options))


# what is good when the label is not an answer: asking (a menu, or "say more") for a vague message; a person
# for what only a person can do; an honest "not ours" (or a person) for another institution's matter. A menu
# of our own topics is no help to the last two, even with its "都不是，转人工" way out.
GOOD_OUTCOMES = {"clarify": {"clarify", "fallback", "handoff"}, "handoff": {"handoff"},
                 "out_of_scope": {"out_of_scope", "handoff"}}


def judge(label: Label, observation: Observation) -> tuple[bool, bool]:
    """(good, wrong answer) of one labelled message."""
    if observation.outcome == "answer":
        right = label.kind == "answer" and observation.answer_id in label.ids
        return right, not right
    if label.kind == "answer":  # a menu that offers a right answer lets the customer reach it in one tap
        return observation.outcome == "clarify" and bool(label.ids & set(observation.options)), False
    return observation.outcome in GOOD_OUTCOMES[label.kind], False


def replay(items: list[ReplayItem], assistant: Assistant, config: BotConfig) -> list[MessageResult]:
    results = []
    with replayer(assistant, config) as running:
        for item in items:
            observation = running.observe(item.text)
            good, wrong = judge(item.label, observation) if item.label else (None, None)
            results.append(MessageResult(item, observation, good, wrong))
    return results


def summarise(results: list[MessageResult]) -> dict[str, Any]:
    """`{"n", "good_rate", "wrong_answer_rate", "answered", "clarified", "handed_over", "out_of_scope",
    "fallback"}`: the rates over n (None without labels), the outcome counts."""
    n = len(results)
    labelled = n > 0 and all(r.good is not None for r in results)
    counts = Counter(r.observation.outcome for r in results)
    return {"n": n,
            "good_rate": _rate(sum(bool(r.good) for r in results), n) if labelled else None,
            "wrong_answer_rate": _rate(sum(bool(r.wrong_answer) for r in results), n) if labelled else None,
            **{key: counts.get(outcome, 0) for outcome, key in COUNT_KEYS.items()}}


def by_label_kind(results: list[MessageResult]) -> dict[str, dict[str, Any]]:
    """The summary of each label kind's messages (for the benchmark report)."""
    kinds = {r.item.label.kind for r in results if r.item.label}
    return {kind: summarise([r for r in results if r.item.label and r.item.label.kind == kind])
            for kind in LABEL_KINDS if kind in kinds}


def evaluate_replay(file: Path, config: BotConfig, assistant: Assistant, *, labels: Path | None = None,
                    half: str | None = None,
                    data_root: Path | None = None) -> tuple[dict[str, Any], list[MessageResult]]:
    """The summary and the per-message results of replaying `file` (see `read_items`) through `assistant`."""
    items = read_items(file, data_root or default_data_root(config), labels, half)
    results = replay(items, assistant, config)
    return summarise(results), results


def default_data_root(config: BotConfig) -> Path:
    """../shared/datasets next to the project."""
    return config.root.parent / "shared" / "datasets"


def load_assistant(config: BotConfig) -> Assistant:
    """The newest model, trained first when there is none or the training data changed (as `bot run` does)."""
    from bot.model import is_stale, latest_model_dir, train

    latest = latest_model_dir(config)
    if latest is None or is_stale(latest, config):
        latest = train(config)
    return Assistant.load(config, latest)


def _rate(count: int, n: int) -> float:
    return round(count / n, 4) if n else 0.0


def _rounded(value: Any) -> float | None:
    return round(float(value), 4) if isinstance(value, int | float) else None


__all__ = ["Label", "MessageResult", "Observation", "ReplayItem", "by_label_kind", "classify_turn",
           "evaluate_replay", "judge", "load_assistant", "read_items", "replay", "summarise"]
