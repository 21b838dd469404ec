"""Model versions over HTTP: the workbench's `/api/trainer/models…` (a trainer's session) and Rasa's model API
(`POST /model/train`, `PUT /model`; a trainer's session or the API token). Routes stay thin: the registry
(bot/trainer/registry.py) decides, the live model (bot/trainer/swap.py) swaps."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from bot.assistant import Assistant
from bot.storage.models import ModelVersion
from bot.trainer import conversation_tests, registry
from bot.trainer.registry import VersionError
from bot.trainer.swap import LiveModel, load_version
from bot.web.schemas import Status
from bot.web.trainer_auth import TrainerDep, TrainerOrTokenDep

TRAIN_WAIT_SECONDS = 1800  # Rasa's POST /model/train answers when the model is trained


class ModelVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())
    version: str
    status: str  # training | ready | failed | active | retired
    progress: dict[str, Any]  # {"step", "done", "total"}
    metrics: dict[str, Any]  # {"train_seconds", "cross_validation", "conversation_tests", "experiment"}
    error: str | None
    data_fingerprint: str | None
    config: dict[str, Any]
    trained_by: str
    trained_at: dt.datetime
    trained_by_name: str | None = None  # the account's display name when trained_by is `agent:<id>`
    activated_by: str | None
    activated_by_name: str | None = None
    activated_at: dt.datetime | None
    experiment_share: float


class ModelVersions(BaseModel):
    active: str | None  # in the database: what every worker serves within a poll
    serving: str  # what this process serves now
    experiment: dict[str, Any] | None  # {"candidate", "share"} while one runs
    versions: list[ModelVersionPublic]


class TrainStarted(BaseModel):
    version: str
    status: str


class ActivateRequest(BaseModel):
    version: str = Field(max_length=64)
    force: bool = False  # activate although the version's conversation tests failed


class ComparisonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(
        default=None, max_length=registry.MAX_INBOX_MESSAGES)  # None: the review inbox's (as the GET's default)
    refresh: bool = False


class ExperimentRequest(BaseModel):
    share: float = Field(ge=0.0, le=1.0)


class ConversationTestRequest(BaseModel):
    name: str | None = Field(default=None, max_length=100)


class ConversationTestCreated(BaseModel):
    file: str
    story: dict[str, Any]


class RasaTrainResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    version: str
    model_file: str
    status: str
    metrics: dict[str, Any]


class RasaModelRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_file: str = Field(max_length=200)  # "models/<version>", "<version>" or "<version>.tar.gz"


class RasaStatus(Status):
    """Rasa's `GET /status` (`model_id`, `model_file`, `num_active_training_jobs`, `fingerprint`) plus ours."""

    model_id: str
    num_active_training_jobs: int
    fingerprint: dict[str, Any]
    active_version: str | None
    experiment: dict[str, Any] | None


def model_router() -> APIRouter:
    router = APIRouter()

    @router.post("/api/trainer/models", status_code=202, response_model=TrainStarted, tags=["trainer"])
    def train_candidate(request: Request, trainer: TrainerDep) -> TrainStarted:
        """Train a candidate from the project's files in the background; its row shows the progress."""
        version = registry.start_training(_database(request), _config(request), trained_by=_who(trainer))
        return TrainStarted(version=version, status="training")

    @router.get("/api/trainer/models", response_model=ModelVersions, tags=["trainer"])
    def list_versions(request: Request, trainer: TrainerDep) -> ModelVersions:
        wanted = registry.desired(_database(request))
        rows = registry.versions(_database(request), _config(request))
        names = registry.actor_names(_database(request), [a for r in rows for a in (r.trained_by, r.activated_by)])
        return ModelVersions(active=wanted.active, serving=_live(request).active.version,
                             experiment={"candidate": wanted.candidate, "share": wanted.share}
                             if wanted.candidate else None, versions=[_public(r, names) for r in rows])

    @router.get("/api/trainer/models/{version}/comparison", tags=["trainer"])
    def comparison(version: str, request: Request, trainer: TrainerDep,
                   message: Annotated[list[str] | None, Query()] = None,
                   refresh: bool = False) -> dict[str, Any]:
        """The candidate against the active model (see registry.compare); cached per active version and
        messages replayed, `refresh=true` computes it again. `message` (repeatable) replaces the review inbox's
        messages (see registry.inbox_messages)."""
        return _comparison(request, version, message, refresh)

    @router.post("/api/trainer/models/{version}/comparison", tags=["trainer"])
    def comparison_of(version: str, request: Request, trainer: TrainerDep,
                      body: ComparisonRequest) -> dict[str, Any]:
        """The same comparison with the messages in the body (as many as a URL could not carry)."""
        return _comparison(request, version, body.messages, body.refresh)

    @router.put("/api/trainer/models/active", response_model=ModelVersionPublic, tags=["trainer"])
    def activate(body: ActivateRequest, request: Request, trainer: TrainerDep) -> ModelVersionPublic:
        """Activate a version, or roll back to an earlier one: this process swaps now, the others at their next
        poll. The release gate: a version whose conversation tests failed needs `force`."""
        failed = _failed_tests(request, body.version)
        if failed and not body.force:
            raise HTTPException(status_code=409, detail=f"模型版本 {body.version} 有 {len(failed)} 个对话测试未通过："
                                f"{'；'.join(failed[:5])}。启用后，这些对话的回答将与测试的预期不同。"
                                "确认这些变化符合预期，仍要启用吗？")  # the API's caller sends "force": true
        row = _activate(request, body.version, _who(trainer))
        return _public(row, registry.actor_names(_database(request), [row.trained_by, row.activated_by]))

    @router.put("/api/trainer/models/{version}/experiment", response_model=ModelVersionPublic, tags=["trainer"])
    def experiment(version: str, body: ExperimentRequest, request: Request,
                   trainer: TrainerDep) -> ModelVersionPublic:
        """Answer `share` of conversations (decided per conversation) with this candidate; 0 ends it."""
        try:
            row = registry.set_experiment(_database(request), version, body.share, actor=_who(trainer))
        except VersionError as e:
            raise HTTPException(status_code=e.status, detail=str(e)) from e
        _live(request).sync()
        return _public(row, registry.actor_names(_database(request), [row.trained_by, row.activated_by]))

    @router.post("/api/trainer/conversations/{conversation_id}/test", status_code=201,
                 response_model=ConversationTestCreated, tags=["trainer"])
    def conversation_test(conversation_id: str, request: Request, trainer: TrainerDep,
                          body: ConversationTestRequest | None = None) -> ConversationTestCreated:
        """Turn a stored conversation (its masked texts) into `tests/conversations/conv-<id>.yml`."""
        store = request.app.state.conversations.store
        conversation = store.find_conversation(conversation_id)
        if conversation is None:
            raise HTTPException(status_code=404, detail=f"没有会话 {conversation_id}。")
        name = (body.name if body and body.name else None) or f"对话 {conversation.id[:12]}"
        story = conversation_tests.conversation_story(name, store.events(conversation.id))
        if not story["steps"]:
            raise HTTPException(status_code=409, detail="这段会话没有客户消息，无法生成测试。")
        config = _config(request)
        try:
            path = conversation_tests.write_test(conversation_tests.tests_dir(config), f"conv-{conversation.id}",
                                                 story)
        except FileExistsError as e:
            raise HTTPException(status_code=409, detail=f"这段会话已经生成过测试：{e}") from e
        return ConversationTestCreated(file=str(path.relative_to(config.root)), story=story)

    @router.post("/model/train", response_model=RasaTrainResult, tags=["rasa"])
    async def rasa_train(request: Request, caller: TrainerOrTokenDep, response: Response) -> RasaTrainResult:
        """Rasa's training endpoint. This server trains from the project's own files (nlu_data/, knowledge/):
        send an empty body (or `{}`); training data in the request is refused. Answers when the model is trained,
        with its version (the `filename` header too, as Rasa names the model file)."""
        body = (await request.body()).strip()
        if body not in (b"", b"{}"):
            raise HTTPException(status_code=400, detail="本服务只从项目文件（nlu_data/、knowledge/）训练，请发送空的"
                                "请求体。This server trains from the project's files: send an empty body.")
        version = registry.start_training(_database(request), _config(request), trained_by=caller)
        row = await asyncio.to_thread(_wait_trained, request, version)
        if row.status == "failed":
            raise HTTPException(status_code=400, detail=f"训练失败 training failed: {row.error}")
        response.headers["filename"] = version
        return RasaTrainResult(version=version, model_file=f"models/{version}", status=row.status,
                               metrics=_visible_metrics(row.metrics))

    @router.put("/model", status_code=204, tags=["rasa"])
    def rasa_replace_model(body: RasaModelRequest, request: Request, caller: TrainerOrTokenDep) -> Response:
        """Rasa's "replace the currently loaded model": activates the version `model_file` names."""
        version = body.model_file.strip().removeprefix("models/").removesuffix(".tar.gz")
        _activate(request, version, caller)
        return Response(status_code=204)

    return router


def rasa_status(request: Request) -> RasaStatus:
    """`GET /status`: the model this process serves, the database's active version and any experiment."""
    assistant: Assistant = request.app.state.assistant
    metadata = assistant.model.metadata
    wanted = registry.desired(_database(request))
    return RasaStatus(model_version=assistant.version, model_file=f"models/{assistant.version}",
                      model_id=assistant.version,
                      intents=len(metadata.get("intents", [])),
                      knowledge_entries=int(metadata.get("n_knowledge_entries", 0)),
                      encoder=str(metadata.get("encoder")), metadata=metadata,
                      num_active_training_jobs=registry.training_jobs(_database(request)),
                      fingerprint={"data": metadata.get("data_fingerprint")}, active_version=wanted.active,
                      experiment={"candidate": wanted.candidate, "share": wanted.share} if wanted.candidate else None)


def _comparison(request: Request, version: str, messages: list[str] | None, refresh: bool) -> dict[str, Any]:
    database, live = _database(request), _live(request)
    row = _row(request, version)
    if row.status in ("training", "failed"):
        raise HTTPException(status_code=409, detail=f"模型版本 {version} 的状态是 {row.status}，无法比较。")
    texts, source = registry.comparison_messages(database, live.active, messages)
    key = registry.comparison_key(live.active.version, texts)
    result = None if refresh else registry.cached_comparison(database, version, key)
    if result is None:
        result = registry.compare(database, _config(request), candidate=_candidate(live, version),
                                  active=live.active, messages=texts, messages_from=source)
        registry.store_comparison(database, version, key, result)
    return {**result, "experiment": registry.experiment_outcomes(database, _config(request), version)}


def _activate(request: Request, version: str, actor: str) -> ModelVersion:
    try:
        if registry.is_known(_database(request), version) is False:
            registry.versions(_database(request), _config(request))  # a directory `bot train` wrote
        row = registry.activate_version(_database(request), version, actor=actor)
    except VersionError as e:
        raise HTTPException(status_code=e.status, detail=str(e)) from e
    _live(request).sync()
    return row


def _failed_tests(request: Request, version: str) -> list[str]:
    """The conversation tests the version failed when it was trained (none recorded: none failed)."""
    try:
        metrics = registry.get(_database(request), version).metrics
    except VersionError:
        return []
    return list((metrics.get("conversation_tests") or {}).get("failed_tests") or [])


def _wait_trained(request: Request, version: str) -> ModelVersion:
    deadline = time.monotonic() + TRAIN_WAIT_SECONDS
    while time.monotonic() < deadline:
        row = registry.get(_database(request), version)
        if row.status != "training":
            return row
        time.sleep(0.5)
    raise HTTPException(status_code=504, detail=f"模型 {version} 仍在训练中，请稍后用 GET /api/trainer/models 查看。")


def _candidate(live: LiveModel, version: str) -> Assistant:
    for agent in (live.candidate, live.active):
        if agent is not None and agent.version == version:
            return agent
    try:
        return load_version(live.config, version)
    except FileNotFoundError as e:
        raise HTTPException(status_code=404, detail=str(e)) from e


def _row(request: Request, version: str) -> ModelVersion:
    try:
        return registry.get(_database(request), version)
    except VersionError as e:
        raise HTTPException(status_code=e.status, detail=str(e)) from e


def _public(row: ModelVersion, names: dict[str, str] | None = None) -> ModelVersionPublic:
    public = ModelVersionPublic.model_validate(row)
    names = names or {}
    return public.model_copy(update={"metrics": _visible_metrics(row.metrics),
                                     "trained_by_name": names.get(row.trained_by),
                                     "activated_by_name": names.get(row.activated_by or "")})


def _visible_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (metrics or {}).items() if k != "comparison"}  # the cached comparison is large


def _who(trainer: Any) -> str:
    return f"agent:{trainer.agent_id}"


def _database(request: Request) -> Any:
    return request.app.state.database


def _config(request: Request) -> Any:
    return request.app.state.config


def _live(request: Request) -> LiveModel:
    return request.app.state.live_model
