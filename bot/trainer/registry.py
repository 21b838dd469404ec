"""Model versions: train a candidate in the background (its progress on its row) → compare it with the active
model → activate it, give it a share of new conversations first, or roll back to any earlier version.

One `ModelVersion` row per model directory (`models/<version>/`); exactly one row is `active`. Processes learn
what to serve from `desired()` (bot/trainer/swap.py polls it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.assistant import Assistant
from bot.config import BotConfig
from bot.model import METADATA_FILE, MODEL_FILE, new_version, train
from bot.nlu.classifier import FALLBACK_INTENT
from bot.storage import Database
from bot.storage.models import AgentAccount, Event, ModelVersion, utcnow
from bot.trainer import conversation_tests

ABANDONED_AFTER = dt.timedelta(hours=6)
TRAINING_STEPS = 8  # train()'s five (six with policies), cross-validation, conversation tests, done
INBOX_DAYS = 30
CV_FOLDS = 5  # fewer when the smallest intent has fewer examples
MIN_FOLDS = 2  # intents with fewer examples are left out of cross-validation
MAX_INBOX_MESSAGES = 500
INBOX_MESSAGES = f"审核收件箱：最近 {INBOX_DAYS} 天待处理的消息，以及启用当前版本以来已修正或标记为超出范围的消息"
REPLAY_LABELS = Path("bench/replay/labels.tsv")
CONFIG_KEYS = {"language", "pipeline", "retrieval", "dialogue", "policies"}
logger = logging.getLogger(__name__)


class VersionError(ValueError):
    """A request about versions that cannot be done; the text is for the trainer. `status` is the HTTP one."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Desired:
    """What every process should serve: the active version and, during an experiment, a candidate's share."""

    active: str | None
    candidate: str | None = None
    share: float = 0.0


def desired(database: Database) -> Desired:
    with database.session() as session:
        rows = session.scalars(select(ModelVersion).where(
            or_(ModelVersion.status == "active", ModelVersion.experiment_share > 0))).all()
    active = next((r.version for r in rows if r.status == "active"), None)
    candidate = next((r for r in rows if r.status != "active" and r.experiment_share > 0), None)
    return Desired(active, candidate.version if candidate else None, candidate.experiment_share if candidate else 0.0)


def active_version(database: Database) -> str | None:
    return desired(database).active


def is_known(database: Database, version: str) -> bool:
    with database.session() as session:
        return session.get(ModelVersion, version) is not None


def get(database: Database, version: str) -> ModelVersion:
    with database.session() as session:
        row = session.get(ModelVersion, version)
    if row is None:
        raise VersionError(f"没有模型版本 {version}。", status=404)
    return row


def versions(database: Database, config: BotConfig) -> list[ModelVersion]:
    """Every version, newest first; model directories trained by `bot train` are recorded on the way."""
    models_dir = config.path(config.models_dir)
    for directory in sorted(models_dir.glob("*")) if models_dir.exists() else []:
        if (directory / MODEL_FILE).exists() and not is_known(database, directory.name):
            record_directory(database, directory, activate=False, actor=None, config=config)
    with database.session() as session:
        return list(session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc())))


def actor_names(database: Database, actors: Iterable[str | None]) -> dict[str, str]:
    """`agent:<id>` (how a trainer's session is recorded as trained_by / activated_by) → the account's display
    name, for the actors that name an existing account."""
    ids = {int(a.removeprefix("agent:")) for a in actors if a and a.startswith("agent:") and a[6:].isdigit()}
    if not ids:
        return {}
    with database.session() as session:
        rows = session.execute(select(AgentAccount.id, AgentAccount.display_name).where(AgentAccount.id.in_(ids)))
        return {f"agent:{account_id}": name for account_id, name in rows}


def record_directory(database: Database, directory: Path, *, activate: bool, actor: str | None,
                     config: BotConfig | None = None) -> None:
    """Record a model directory trained outside the registry (`bot train`, `bot run`); `config` is the one the
    process runs with, recorded as the version's config."""
    metadata = json.loads((directory / METADATA_FILE).read_text("utf-8"))
    try:
        with database.session() as session, session.begin():
            session.add(ModelVersion(
                version=directory.name, status="ready", data_fingerprint=metadata.get("data_fingerprint"),
                config=config.model_dump(mode="json", include=CONFIG_KEYS) if config else {},
                metrics={"train_seconds": metadata.get("train_seconds")}, progress={},
                trained_by=str(metadata.get("trained_by") or "bot train"),
                trained_at=_trained_at(metadata), experiment_share=0.0))
    except IntegrityError:  # another worker recorded it first
        return
    if activate:
        activate_version(database, directory.name, actor=actor or "startup")


def _trained_at(metadata: dict[str, Any]) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(metadata["trained_at"]))
    except (KeyError, ValueError):
        return utcnow()


# --- training -----------------------------------------------------------------------------------------------


def start_training(database: Database, config: BotConfig, *, trained_by: str) -> str:
    """Record a candidate and train it in a worker thread; returns its version at once."""
    version = new_version()
    with database.session() as session, session.begin():
        session.add(ModelVersion(
            version=version, status="training", config=config.model_dump(mode="json", include=CONFIG_KEYS),
            metrics={}, progress={"step": "排队 queued", "done": 0, "total": TRAINING_STEPS},
            trained_by=trained_by, experiment_share=0.0))
    worker = threading.Thread(target=run_training, args=(database, config, version, trained_by),
                              name=f"train-{version}", daemon=True)
    worker.start()
    return version


def run_training(database: Database, config: BotConfig, version: str, trained_by: str) -> None:
    """The worker: train, cross-validate, run the conversation tests; the row says how far it got."""
    done = 0

    def progress(step: str) -> None:
        nonlocal done
        done = min(done + 1, TRAINING_STEPS - 1)
        _set(database, version, progress={"step": step, "done": done, "total": TRAINING_STEPS})

    try:
        directory = train(config, progress, version=version, trained_by=trained_by)
        metadata = json.loads((directory / METADATA_FILE).read_text("utf-8"))
        progress("交叉验证 cross-validation")
        metrics: dict[str, Any] = {"train_seconds": metadata["train_seconds"],
                                   "cross_validation": cross_validation(config, directory / "results")}
        progress("对话测试 conversation tests")
        metrics["conversation_tests"] = conversation_tests.summary(config, Assistant.load(config, directory))
    except Exception as e:  # the trainer sees why on the row; the server goes on
        logger.exception("training model version %s failed", version)
        _set(database, version, status="failed", error=f"{type(e).__name__}: {e}"[:2000],
             progress={"step": "失败 failed", "done": done, "total": TRAINING_STEPS})
        return
    _set(database, version, status="ready", metrics=metrics, data_fingerprint=metadata.get("data_fingerprint"),
         progress={"step": "完成 done", "done": TRAINING_STEPS, "total": TRAINING_STEPS})


def cross_validation(config: BotConfig, out: Path) -> dict[str, Any]:
    """Cross-validation of the data the candidate was trained on: accuracy, macro-F1, F1 per intent. Five folds,
    fewer when an intent has fewer examples (a new intent from the inbox often has two or three); intents with
    a single example are left out. `note` (Chinese, for the page) says what was done differently."""
    from bot.crossval import cross_validate
    from bot.training_data import TrainingDataError, load_training_data

    try:
        counts = Counter(e.intent for e in load_training_data(config.path(config.nlu_data)).examples)
    except TrainingDataError as e:
        return {"skipped": f"训练数据无法读取，未做交叉验证：{e}"}
    few = sorted(name for name, n in counts.items() if n < MIN_FOLDS)
    kept = [n for name, n in counts.items() if name not in few]
    if len(kept) < 2:
        return {"skipped": f"至少要有两个意图各有 {MIN_FOLDS} 条以上例句，才能做交叉验证"}
    folds = min(CV_FOLDS, *kept)
    try:
        summary = cross_validate(config, folds=folds, out=out, leave_out=few)
    except ValueError as e:
        return {"skipped": f"交叉验证未能完成：{e}"}
    report = json.loads((out / "intent_report.json").read_text("utf-8"))
    per_intent = {name: round(values["f1-score"], 4) for name, values in report.items()
                  if isinstance(values, dict) and name not in ("macro avg", "weighted avg", FALLBACK_INTENT)}
    notes = [f"有意图只有 {min(kept)} 条例句，改做 {folds} 折交叉验证"] if folds < CV_FOLDS else []
    if few:
        notes.append(f"只有 1 条例句的意图未参加交叉验证：{'、'.join(few)}")
    return {"accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"], "per_intent_f1": per_intent,
            "folds": folds, "left_out": few, "note": "；".join(notes) or None}


def _set(database: Database, version: str, **values: Any) -> None:
    with database.session() as session, session.begin():
        session.execute(update(ModelVersion).where(ModelVersion.version == version).values(**values))


def fail_abandoned(database: Database, older_than: dt.timedelta = ABANDONED_AFTER) -> int:
    """Rows still `training` long after they started belong to a process that ended mid-training."""
    cutoff = utcnow() - older_than
    with database.session() as session, session.begin():
        result = session.execute(update(ModelVersion).where(
            ModelVersion.status == "training", ModelVersion.trained_at < cutoff).values(
            status="failed", error="训练中断：训练它的进程已经退出 (the training process ended)"))
        return int(getattr(result, "rowcount", 0) or 0)


def training_jobs(database: Database) -> int:
    with database.session() as session:
        return len(session.scalars(select(ModelVersion.version).where(ModelVersion.status == "training")).all())


# --- activation and experiments -----------------------------------------------------------------------------


def activate_version(database: Database, version: str, *, actor: str) -> ModelVersion:
    """Make `version` the active one (a rollback is the activation of an earlier version)."""
    with database.session() as session, session.begin():
        row = session.get(ModelVersion, version, with_for_update=True)
        if row is None:
            raise VersionError(f"没有模型版本 {version}。", status=404)
        if row.status in ("training", "failed"):
            raise VersionError(f"模型版本 {version} 的状态是 {row.status}，不能启用。")
        if row.status != "active":
            for other in session.scalars(select(ModelVersion).where(ModelVersion.status == "active")):
                other.status = "retired"
            row.status, row.activated_by, row.activated_at = "active", actor, utcnow()
        row.experiment_share = 0.0
        return row


def set_experiment(database: Database, version: str, share: float, *, actor: str) -> ModelVersion:
    """Send `share` (0..1) of conversations to the candidate `version`; 0 ends the experiment. One at a time."""
    with database.session() as session, session.begin():
        row = session.get(ModelVersion, version, with_for_update=True)
        if row is None:
            raise VersionError(f"没有模型版本 {version}。", status=404)
        if row.status not in ("ready", "retired"):
            raise VersionError(f"模型版本 {version} 的状态是 {row.status}；只有训练完成、未启用的版本可以做实验。")
        session.execute(update(ModelVersion).where(ModelVersion.version != version).values(experiment_share=0.0))
        row.experiment_share = share
        if share > 0:
            row.metrics = {**row.metrics, "experiment": {"started_at": utcnow().isoformat(), "by": actor,
                                                         "share": share}}
        return row


def experiment_outcomes(database: Database, config: BotConfig, version: str) -> dict[str, Any]:
    """Outcomes of the turns each arm answered since the candidate's experiment started."""
    from bot.eval.replay import classify_turn

    started = (get(database, version).metrics.get("experiment") or {}).get("started_at")
    if not started:
        return {}
    since = dt.datetime.fromisoformat(started)
    counts: dict[str, dict[str, int]] = {}
    for arm, replies, parse in _experiment_turns(database, since, version):
        outcome = classify_turn(replies, parse, {}, frozenset(), config.dialogue.fallback_response).outcome
        counts.setdefault(arm, {}).setdefault(outcome, 0)
        counts[arm][outcome] += 1
    return {arm: {"turns": sum(c.values()), **c} for arm, c in counts.items()}


def _experiment_turns(database: Database, since: dt.datetime,
                      version: str) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    with database.session() as session:
        rows = session.scalars(select(Event).where(Event.timestamp >= since, Event.type.in_(("user", "bot")))
                               .order_by(Event.conversation_id, Event.seq)).all()
    turns: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    for event in rows:
        parse = (event.data or {}).get("parse_data") or {}
        if event.type == "user":
            model = parse.get("model") or {}
            arm = model.get("arm") if model.get("arm") == "active" or model.get("version") == version else None
            turns.append((arm or "", [], parse))
        elif turns:
            data = (event.data or {}).get("data") or {}
            turns[-1][1].append({"text": event.data.get("text"), "source": data.get("source")})
    return [t for t in turns if t[0]]


# --- comparison ---------------------------------------------------------------------------------------------


def compare(database: Database, config: BotConfig, *, candidate: Assistant, active: Assistant, messages: list[str],
            messages_from: str) -> dict[str, Any]:
    """The candidate against the active model on the same data (see `bot/web/model_api.py` for the shape);
    `messages` (from `comparison_messages`) are replayed on both."""
    candidate_row, active_row = get(database, candidate.version), _row_or_none(database, active.version)
    return {
        "candidate": candidate.version, "active": active.version,
        "cross_validation": _cross_validation(candidate_row, active_row),
        "conversation_tests": _conversation_tests(config, candidate, active),
        "replay": _replay(config, candidate, active),
        "outcome_changes": outcome_changes(config, messages, before=active, after=candidate),
        "messages_compared": len(messages),
        "messages_from": messages_from,
        "experiment": experiment_outcomes(database, config, candidate.version),
    }


def comparison_messages(database: Database, active: Assistant, messages: list[str] | None) -> tuple[list[str], str]:
    """The messages a comparison replays and where they came from: the request's, or the review inbox's."""
    if messages is not None:
        return messages, "request"
    return inbox_messages(database, active), INBOX_MESSAGES


def _row_or_none(database: Database, version: str) -> ModelVersion | None:
    try:
        return get(database, version)
    except VersionError:
        return None


def _cross_validation(candidate: ModelVersion, active: ModelVersion | None) -> dict[str, Any]:
    new = candidate.metrics.get("cross_validation") or {}
    old = (active.metrics.get("cross_validation") or {}) if active is not None else {}
    intents = sorted((set(new.get("per_intent_f1", {})) | set(old.get("per_intent_f1", {}))) - {FALLBACK_INTENT})
    per_intent = [{"intent": name, "active_f1": old.get("per_intent_f1", {}).get(name),
                   "candidate_f1": new.get("per_intent_f1", {}).get(name)} for name in intents]
    for item in per_intent:
        item["change"] = None if None in (item["active_f1"], item["candidate_f1"]) else \
            round(item["candidate_f1"] - item["active_f1"], 4)
    per_intent.sort(key=lambda i: -abs(i["change"] or 0))
    note = None if old.get("accuracy") is not None else "启用中的版本没有记录交叉验证结果（在训练台外训练）"
    return {"candidate": {k: new.get(k) for k in ("accuracy", "macro_f1", "folds", "note", "skipped")},
            "active": {k: old.get(k) for k in ("accuracy", "macro_f1", "folds", "note", "skipped")},
            "per_intent": per_intent, "note": note}


def _conversation_tests(config: BotConfig, candidate: Assistant, active: Assistant) -> dict[str, Any]:
    new, old = conversation_tests.summary(config, candidate), conversation_tests.summary(config, active)
    if "skipped" in new:
        return new
    return {"candidate": new, "active": old,
            "newly_failing": sorted(set(new["failed_tests"]) - set(old["failed_tests"])),
            "newly_passing": sorted(set(old["failed_tests"]) - set(new["failed_tests"]))}


def _replay(config: BotConfig, candidate: Assistant, active: Assistant) -> dict[str, Any]:
    """The replay evaluation's numbers for both, when the labelled messages and their data sets are here."""
    from bot.eval.datasets import DatasetError
    from bot.eval.replay import evaluate_replay

    labels = config.root / REPLAY_LABELS
    if not labels.exists():
        return {"skipped": f"没有回放标注文件 {REPLAY_LABELS}，跳过回放评估"}
    try:
        return {"candidate": evaluate_replay(labels, config, candidate)[0],
                "active": evaluate_replay(labels, config, active)[0]}
    except DatasetError as e:
        return {"skipped": f"回放评估的数据不可用，跳过：{e}"}


def outcome_changes(config: BotConfig, texts: list[str], *, before: Assistant,
                    after: Assistant) -> list[dict[str, Any]]:
    """Every message whose outcome (answer/clarify/…, and which answer) differs between the two models."""
    from bot.eval.replay import ReplayItem, replay

    items = [ReplayItem(text, f"message:{i}") for i, text in enumerate(texts)]
    old, new = replay(items, before, config), replay(items, after, config)
    changes = []
    for item, a, b in zip(items, old, new, strict=True):
        was, now = _observed(a.observation), _observed(b.observation)
        if (was["outcome"], was["answer"]) != (now["outcome"], now["answer"]):
            changes.append({"text": item.text, "before": was, "after": now})
    return changes


def _observed(observation: Any) -> dict[str, Any]:
    return {"outcome": observation.outcome, "answer": observation.answer_id, "intent": observation.intent,
            "confidence": observation.confidence}


def inbox_messages(database: Database, active: Assistant, days: int = INBOX_DAYS) -> list[str]:
    """The distinct texts (masked, as stored) of the review inbox's messages of the last `days` days that a
    candidate may answer differently: first those fixed or marked out of scope since the active version was
    activated (or within `days` when that is not known), the trainer's own work, then the open ones."""
    from bot.trainer.inbox import InboxContext, inbox_items, reviewed_since

    now = utcnow()
    since = (now - dt.timedelta(days=days)).date()
    items = inbox_items(database, InboxContext.from_assistant(active), since, now.date())
    row = _row_or_none(database, active.version)
    since = row.activated_at if row is not None and row.activated_at else now - dt.timedelta(days=days)
    recent = reviewed_since(database, since)
    reviewed = [i.text for i in items if i.status != "open" and i.key in recent]
    return list(dict.fromkeys(reviewed + [i.text for i in items if i.status == "open"]))[:MAX_INBOX_MESSAGES]


def comparison_key(active: str, messages: list[str]) -> str:
    """A cached comparison holds while the active version and the messages replayed are the same."""
    digest = hashlib.sha256(json.dumps(messages, ensure_ascii=False).encode()).hexdigest()[:16]
    return f"{active}:{digest}"


def cached_comparison(database: Database, version: str, key: str) -> dict[str, Any] | None:
    cached = get(database, version).metrics.get("comparison") or {}
    return cached.get("result") if cached.get("key") == key else None


def store_comparison(database: Database, version: str, key: str, result: dict[str, Any]) -> None:
    with database.session() as session, session.begin():
        row = session.get(ModelVersion, version, with_for_update=True)
        if row is not None:
            row.metrics = {**row.metrics, "comparison": {"key": key, "result": result}}
