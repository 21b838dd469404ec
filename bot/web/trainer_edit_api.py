"""The trainer's workbench, editing side: the training data and knowledge base as the trainer sees them, fixes
from the review inbox, edits with a version check, and the validator's findings for a proposal.

Routes stay thin: the edits are `bot.trainer.edits`, the checks `bot.trainer.findings`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.config import BotConfig
from bot.retrieval.knowledge import KnowledgeError, load_knowledge
from bot.trainer.edits import DataEditor, EditConflict, EditError, EditNotFound, mark_messages
from bot.trainer.findings import Finding, example_findings, question_findings, response_findings, suggestions
from bot.training_data import TrainingDataError, load_training_data
from bot.web.trainer_auth import TrainerDep

Line = Annotated[str, Field(min_length=1, max_length=500)]
Lines = Annotated[list[Line], Field(min_length=1, max_length=1000)]
FIX_STATUS = {"add_to_intent": "fixed", "add_to_entry": "fixed", "new_intent": "fixed", "new_entry": "fixed",
              "out_of_scope": "out_of_scope"}  # dismissing is the inbox's own (POST /api/trainer/inbox/dismiss)
FIX_NEEDS = {"add_to_intent": ("intent",), "add_to_entry": ("entry_id",), "new_intent": ("intent", "response"),
             "new_entry": ("category", "answer")}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixRequest(_Body):
    """Messages from the inbox and what to do with them."""

    texts: Lines
    kind: Literal["add_to_intent", "add_to_entry", "new_intent", "new_entry", "out_of_scope"]
    intent: str | None = Field(default=None, max_length=100)  # add_to_intent, new_intent
    entry_id: str | None = Field(default=None, max_length=100)  # add_to_entry
    response: str | None = Field(default=None, max_length=4000)  # new_intent: the text of utter_<intent>
    file: str | None = Field(default=None, max_length=200)  # new_intent: e.g. nlu_data/cards.yml (else trainer.yml)
    category: str | None = Field(default=None, max_length=100)  # new_entry
    question: str | None = Field(default=None, max_length=500)  # new_entry (default: the first text)
    answer: str | None = Field(default=None, max_length=4000)  # new_entry
    versions: dict[str, str] | None = None  # file -> version the trainer saw; checked for the files written

    @model_validator(mode="after")
    def _has_what_the_kind_needs(self) -> FixRequest:
        missing = [f for f in FIX_NEEDS.get(self.kind, ()) if not (getattr(self, f) or "").strip()]
        if missing:
            raise ValueError(f"{self.kind} 需要填写：{', '.join(missing)}")
        return self


class SuggestRequest(_Body):
    texts: Annotated[list[Line], Field(min_length=1, max_length=200)]


class Variant(_Body):
    text: str | None = Field(default=None, max_length=4000)
    channel: str | None = Field(default=None, max_length=32)
    buttons: list[dict[str, str]] | None = None
    image: str | None = Field(default=None, max_length=1000)
    condition: list[dict[str, Any]] | None = None
    custom: dict[str, Any] | None = None


class LinesUpdate(_Body):
    examples: Lines
    version: str | None  # of the file that holds it; null for a new one


class ResponseUpdate(_Body):
    variants: Annotated[list[Variant], Field(min_length=1, max_length=50)]
    version: str | None


class EntryUpdate(_Body):
    """Only the fields sent change; null removes an optional one."""

    version: str | None
    category: str | None = Field(default=None, max_length=100)
    question: str | None = Field(default=None, max_length=500)
    similar: list[Line] | None = None
    answer: str | None = Field(default=None, max_length=8000)
    answers: dict[str, str] | None = None
    tags: list[str] | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None


class ExamplesProposal(_Body):
    kind: Literal["examples"]
    intent: str
    texts: Lines


class QuestionsProposal(_Body):
    kind: Literal["questions"]
    entry_id: str | None = None  # None: a new entry
    texts: Lines


class ResponseProposal(_Body):
    kind: Literal["response"]
    name: str
    variants: Annotated[list[Variant], Field(min_length=1, max_length=50)]


Proposal = Annotated[ExamplesProposal | QuestionsProposal | ResponseProposal, Field(discriminator="kind")]


def _editor(request: Request) -> DataEditor:
    config = request.app.state.config
    return DataEditor(config.path(config.nlu_data), config.path(config.retrieval.knowledge),
                      audit=request.app.state.conversations.store.audit)


EditorDep = Annotated[DataEditor, Depends(_editor)]


def trainer_edit_router() -> APIRouter:
    router = APIRouter(prefix="/api/trainer", tags=["trainer"])

    @router.get("/data")
    def data(trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        """Intents, responses, synonyms, lookups, regexes and knowledge entries, each with its file and version."""
        return editor.snapshot()

    @router.post("/fixes")
    def fix(body: FixRequest, trainer: TrainerDep, editor: EditorDep, request: Request) -> dict[str, Any]:
        """Fix inbox messages; every text gets a review mark so the inbox no longer shows it."""
        actor = _actor(trainer)
        target, versions = _guarded(lambda: _apply_fix(editor, body, actor))
        marked = mark_messages(request.app.state.database, body.texts, status=FIX_STATUS[body.kind],
                               action={"kind": body.kind, "target": target, "files": sorted(versions)}, actor=actor)
        return {"kind": body.kind, "target": target, "versions": versions, "marked": marked}

    @router.post("/findings")
    def findings(body: Proposal, trainer: TrainerDep, request: Request) -> dict[str, list[Finding]]:
        """What the validator would say about a proposal; nothing is written."""
        return {"findings": _findings(request, body)}

    @router.post("/suggestions")
    def suggest(body: SuggestRequest, trainer: TrainerDep, request: Request) -> dict[str, Any]:
        """For a group of inbox messages: likely intents and entries, and similar existing examples."""
        config = request.app.state.config
        try:
            data = load_training_data(config.path(config.nlu_data))
        except TrainingDataError as e:
            raise HTTPException(status_code=422, detail=f"训练数据无法读取：{e}") from e
        return suggestions(data, body.texts, request.app.state.assistant, root=_shown_root(config))

    @router.put("/intents/{name}")
    def put_intent(name: str, body: LinesUpdate, trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        return _saved(lambda: editor.set_examples(name, body.examples, actor=_actor(trainer), version=body.version))

    @router.put("/synonyms/{name}")
    def put_synonym(name: str, body: LinesUpdate, trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        return _saved(lambda: editor.set_synonym(name, body.examples, actor=_actor(trainer), version=body.version))

    @router.put("/lookups/{name}")
    def put_lookup(name: str, body: LinesUpdate, trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        return _saved(lambda: editor.set_lookup(name, body.examples, actor=_actor(trainer), version=body.version))

    @router.put("/regexes/{name}")
    def put_regex(name: str, body: LinesUpdate, trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        return _saved(lambda: editor.set_regex(name, body.examples, actor=_actor(trainer), version=body.version))

    @router.put("/responses/{name}")
    def put_response(name: str, body: ResponseUpdate, trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        variants = [v.model_dump(exclude_none=True) for v in body.variants]
        return _saved(lambda: editor.set_response(name, variants, actor=_actor(trainer), version=body.version))

    @router.put("/entries/{entry_id}")
    def put_entry(entry_id: str, body: EntryUpdate, trainer: TrainerDep, editor: EditorDep) -> dict[str, Any]:
        fields = body.model_dump(mode="json", exclude_unset=True, exclude={"version"})
        return _saved(lambda: editor.update_entry(entry_id, fields, actor=_actor(trainer), version=body.version))

    return router


def _actor(trainer: Any) -> str:
    return f"agent:{trainer.agent_id}"  # as bot.web.trainer_auth names a trainer's session


def _apply_fix(editor: DataEditor, body: FixRequest, actor: str) -> tuple[str, dict[str, str]]:
    """(what was changed, the new file versions)."""
    texts, versions = body.texts, body.versions
    if body.kind == "add_to_intent":
        return str(body.intent), editor.add_examples(str(body.intent), texts, actor=actor, versions=versions)
    if body.kind == "add_to_entry":
        return str(body.entry_id), editor.add_similar_questions(str(body.entry_id), texts, actor=actor,
                                                                versions=versions)
    if body.kind == "new_intent":
        return str(body.intent), editor.create_intent(str(body.intent), texts, str(body.response), actor=actor,
                                                      file=body.file, versions=versions)
    if body.kind == "new_entry":
        question = body.question or texts[0]
        return editor.create_entry(str(body.category), question, texts, str(body.answer), actor=actor,
                                   versions=versions)
    return "out_of_scope", editor.mark_out_of_scope(texts, actor=actor, versions=versions)


def _guarded(edit: Any) -> Any:
    try:
        return edit()
    except EditConflict as e:
        raise HTTPException(status_code=409, detail=str(e)) from e
    except EditNotFound as e:
        raise HTTPException(status_code=404, detail=str(e)) from e
    except EditError as e:
        raise HTTPException(status_code=422, detail=str(e)) from e


def _saved(edit: Any) -> dict[str, Any]:
    return {"versions": _guarded(edit)}


def _findings(request: Request, body: ExamplesProposal | QuestionsProposal | ResponseProposal) -> list[Finding]:
    config = request.app.state.config
    try:
        if isinstance(body, QuestionsProposal):
            return question_findings(load_knowledge(config.path(config.retrieval.knowledge)), body.texts,
                                     body.entry_id)
        data = load_training_data(config.path(config.nlu_data))
    except (TrainingDataError, KnowledgeError) as e:
        return [{"level": "error", "message": f"数据文件无法读取：{e}", "where": "data"}]
    root = _shown_root(config)
    if isinstance(body, ExamplesProposal):
        return example_findings(data, body.intent, body.texts, request.app.state.assistant, root=root)
    return response_findings(data, body.name, [v.model_dump(exclude_none=True) for v in body.variants], root=root)


def _shown_root(config: BotConfig) -> Path:
    """What findings name files relative to: the project's folder, or the data's when it lies elsewhere."""
    data = config.path(config.nlu_data).resolve()
    root = config.root.resolve()
    return root if data.is_relative_to(root) else data.parent
