"""The FAQ knowledge base: `knowledge/*.yml` files of entries (format in README)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.yaml_io import item_line, load_yaml, plain


class KnowledgeError(ValueError):
    """A knowledge file that cannot be used; the message names the file, line and problem."""


class KnowledgeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    category: str = Field(min_length=1)
    question: str = Field(min_length=1)
    similar: list[str] = []
    answer: str = Field(min_length=1)
    answers: dict[str, str] = {}  # channel -> variant (wechat: plain text; web/app: Markdown)
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    tags: list[str] = []

    @field_validator("similar", "tags", mode="before")
    @classmethod
    def _strings(cls, value: object) -> object:
        return [str(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _dates_in_order(self) -> KnowledgeEntry:
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError(f"valid_from {self.valid_from} is after valid_to {self.valid_to}")
        return self

    @property
    def questions(self) -> list[str]:
        return [self.question, *self.similar]

    def is_valid_on(self, day: dt.date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)

    def answer_for(self, channel: str) -> str:
        return self.answers.get(channel, self.answer)


def load_knowledge(path: str | Path) -> list[KnowledgeEntry]:
    """All entries under a folder (or in one file); ids must be unique across files."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in {".yml", ".yaml"})
    entries: list[KnowledgeEntry] = []
    seen: dict[str, str] = {}
    for file in files:
        for entry, where in _parse_file(file):
            if entry.id in seen:
                raise KnowledgeError(f"{where}: duplicate id '{entry.id}' (first defined at {seen[entry.id]})")
            seen[entry.id] = where
            entries.append(entry)
    return entries


def _parse_file(file: Path) -> list[tuple[KnowledgeEntry, str]]:
    document = load_yaml(file, KnowledgeError)
    if document is None:
        return []
    items = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise KnowledgeError(f"{file}:1: expected a top-level 'entries:' list")
    result = []
    for index, item in enumerate(items):
        line = item_line(items, index)
        try:
            result.append((KnowledgeEntry.model_validate(plain(item)), f"{file}:{line}"))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}" for err in e.errors())
            raise KnowledgeError(f"{file}:{line}: invalid knowledge entry: {problems}") from e
    return result
