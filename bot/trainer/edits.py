"""The trainer's edits to `nlu_data/` and `knowledge/`: lock → read → check versions → change → check the file
still loads → write atomically → audit.

Files are read and written with ruamel.yaml's round trip, so comments, key order, quoting and block styles stay
as the trainers wrote them. A file's version is the SHA-256 of its bytes: an edit that names the version it was
based on is refused (`EditConflict`) when the file changed meanwhile, instead of overwriting another trainer's
work. Files are named `<folder>/<path in folder>` (e.g. `nlu_data/cards.yml`), as trainers see them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import EllipsisType
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString
from ruamel.yaml.util import load_yaml_guess_indent
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.retrieval.knowledge import KnowledgeEntry, KnowledgeError, load_knowledge
from bot.storage.database import Database
from bot.storage.models import ReviewMark, utcnow
from bot.trainer.keys import message_key, normalised
from bot.training_data import TrainingDataError, parse_file
from bot.yaml_io import plain

AuditFn = Callable[[str, str, str, dict[str, Any]], None]  # (actor, action, target, details)
TRAINER_FILE = "trainer.yml"  # where new things go when no file holds their kind yet
OUT_OF_SCOPE_RESPONSE = "utter_out_of_scope"
OUT_OF_SCOPE_TEXT = ("抱歉，这不在我们的服务范围内，我帮不上忙。"
                     "账户、银行卡、信用卡、贷款、转账和理财方面的问题都可以问我；如需人工服务，请回复“转人工”。")
NLU_KINDS = ("intent", "synonym", "lookup", "regex")
ENTRY_FIELDS = {"category", "question", "similar", "answer", "answers", "tags", "valid_from", "valid_to"}
NUMBERED_ID = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")


class EditError(ValueError):
    """An edit that cannot be made; the message (Chinese) tells the trainer why."""


class EditNotFound(EditError):
    """The intent, response or entry to change does not exist (any more)."""


class EditConflict(EditError):
    """The file changed since the trainer loaded it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"文件 {name} 在您打开后已被其他人修改，为避免覆盖对方的改动，本次修改未保存。"
                         "请重新加载后再修改。")
        self.file = name


def file_version(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes; "" for a file that does not exist yet."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


# --- one file's document --------------------------------------------------------------------------------------


class _Document:
    """A YAML file loaded for a round trip, dumped with the indentation it was written with."""

    def __init__(self, path: Path, new: dict[str, Any]) -> None:
        self.path = path
        raw = path.read_bytes() if path.is_file() else b""
        self.version = hashlib.sha256(raw).hexdigest() if path.is_file() else ""
        text = raw.decode("utf-8")
        _, indent, offset = load_yaml_guess_indent(text) if text.strip() else (None, None, None)
        self.yaml = YAML(typ="rt")
        self.yaml.preserve_quotes = True
        self.yaml.width = 4096  # never re-wrap a long line
        self.yaml.indent(mapping=indent or 2, sequence=indent or 2, offset=offset or 0)
        if re.search(r"[:-] null\b", text):  # round trip writes null as nothing; keep the file's spelling
            self.yaml.representer.add_representer(type(None), _null)
        self.data = self.yaml.load(text) if text.strip() else CommentedMap(new)
        self.changed = False

    def dump(self) -> str:
        buffer = io.StringIO()
        self.yaml.dump(self.data, buffer)
        return buffer.getvalue()


def _null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


class _Edit:
    """The documents of one edit under one folder: each read once, the changed ones written at the end."""

    def __init__(self, root: Path, new: dict[str, Any]) -> None:
        self.root = root
        self.new = new
        self.documents: dict[Path, _Document] = {}

    def name(self, path: Path) -> str:
        return f"{self.root.name}/{path.relative_to(self.root).as_posix()}"

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())

    def open(self, path: Path) -> _Document:
        if path not in self.documents:
            try:
                self.documents[path] = _Document(path, self.new)
            except (MarkedYAMLError, UnicodeDecodeError) as e:
                raise EditError(f"{self.name(path)} 无法读取（{e}），请先修复该文件。") from e
        return self.documents[path]

    def inside(self, file: str) -> Path:
        """A file as the workbench names it (`nlu_data/cards.yml`) or as a path inside the folder."""
        relative = file.removeprefix(f"{self.root.name}/")
        path = self.root / relative
        if not path.resolve().is_relative_to(self.root.resolve()) or path.suffix not in {".yml", ".yaml"}:
            raise EditError(f"文件名 {file} 无效：请填写 {self.root.name}/ 下的 .yml 文件。")
        return path

    def all(self) -> list[_Document]:
        return [self.open(p) for p in self.files()]

    def change(self, document: _Document, version: str | None | EllipsisType = ...) -> None:
        """Mark `document` as changed; with a `version` (None: the trainer saw no version) it must be current."""
        if version is not ... and version != document.version:
            raise EditConflict(self.name(document.path))
        document.changed = True

    def check(self, versions: Mapping[str, str] | None) -> None:
        for document in self.documents.values():
            name = self.name(document.path)
            if document.changed and versions and name in versions and versions[name] != document.version:
                raise EditConflict(name)

    def write(self, load: Callable[[Path], object]) -> dict[str, str]:
        """Write every changed document: to a temp file, checked with `load`, then renamed over the original."""
        written = [(d, self._temp(d)) for d in self.documents.values() if d.changed]
        try:
            for document, temp in written:
                self._check_loads(load, document, temp)
            for document, temp in written:
                os.replace(temp, document.path)
        finally:
            for _, temp in written:
                temp.unlink(missing_ok=True)
        return {self.name(d.path): file_version(d.path) for d, _ in written}

    def _temp(self, document: _Document) -> Path:
        temp = document.path.with_name(f".{document.path.name}.{uuid.uuid4().hex}.tmp")
        document.path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("w", encoding="utf-8") as handle:
            handle.write(document.dump())
            handle.flush()
            os.fsync(handle.fileno())
        if document.path.exists():
            os.chmod(temp, document.path.stat().st_mode)
        return temp

    def _check_loads(self, load: Callable[[Path], object], document: _Document, temp: Path) -> None:
        try:
            load(temp)
        except (TrainingDataError, KnowledgeError) as e:
            problem = str(e).replace(str(temp), self.name(document.path))
            raise EditError(f"修改后的 {self.name(document.path)} 无法读取，未保存：{problem}") from e


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One edit at a time per folder, across threads and processes of this host (flock on the folder)."""
    root.mkdir(parents=True, exist_ok=True)
    handle = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


# --- nlu blocks (`examples: |` lists) -------------------------------------------------------------------------


def clean_texts(texts: list[str]) -> list[str]:
    """One example or question per line: stripped, without empty and repeated ones."""
    result: list[str] = []
    for text in texts:
        text = text.strip()
        if "\n" in text or "\r" in text:
            raise EditError(f"「{text[:30]}」包含换行：每条例句或问法只能占一行。")
        if text and normalised(text) not in {normalised(t) for t in result}:
            result.append(text)
    return result


def block_lines(item: Any) -> list[str]:
    """An nlu block's lines as written: examples (with their `[..](entity)` annotations) and `#` comments."""
    examples = item.get("examples")
    if isinstance(examples, list):
        return [str(e["text"]) for e in examples if isinstance(e, dict) and "text" in e]
    lines = [line.strip() for line in str(examples or "").splitlines() if line.strip()]
    return [line[2:].strip() if line.startswith("- ") else line for line in lines]


def block_texts(item: Any) -> list[str]:
    return [line for line in block_lines(item) if not line.startswith("#")]


def _write_block(item: Any, texts: list[str]) -> None:
    """Set a block's examples to `texts` in that order; a comment stays before the example it preceded (or the
    next one kept)."""
    if isinstance(item.get("examples"), list):
        item["examples"] = CommentedSeq([CommentedMap({"text": t}) for t in texts])
        return
    wanted = {normalised(t) for t in texts}
    before: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in block_lines(item):
        if line.startswith("#"):
            pending.append(line)
        elif normalised(line) in wanted:
            before[normalised(line)] = before.get(normalised(line), []) + pending
            pending = []
    lines = [line for t in texts for line in [*before.get(normalised(t), []), f"- {t}"]] + pending
    item["examples"] = LiteralScalarString("".join(f"{line}\n" for line in lines))


def _nlu_items(document: _Document, kind: str, name: str | None = None) -> list[Any]:
    items = document.data.get("nlu") if isinstance(document.data, dict) else None
    return [i for i in items or [] if isinstance(i, dict) and kind in i and (name is None or str(i[kind]) == name)]


def _new_block(edit: _Edit, kind: str, name: str, file: str | None) -> Any:
    """A new `- <kind>: <name>` block, in `file`, the file with most blocks of its kind, or trainer.yml."""
    document = edit.open(edit.inside(file)) if file else _home(edit, lambda d: len(_nlu_items(d, kind)))
    if not isinstance(document.data.get("nlu"), list):
        document.data["nlu"] = CommentedSeq()
    item = CommentedMap({kind: name, "examples": LiteralScalarString("")})
    document.data["nlu"].append(item)
    return document, item


def _home(edit: _Edit, count: Callable[[_Document], int]) -> _Document:
    documents = [(count(d), d) for d in edit.all()]
    best = max(documents, key=lambda pair: pair[0], default=(0, None))
    return best[1] if best[0] > 0 and best[1] is not None else edit.open(edit.root / TRAINER_FILE)


def _find_block(edit: _Edit, kind: str, name: str) -> tuple[_Document, Any] | None:
    for document in edit.all():
        for item in _nlu_items(document, kind, name):
            return document, item
    return None


def _single_block(edit: _Edit, kind: str, name: str) -> tuple[_Document, Any] | None:
    found = [(d, i) for d in edit.all() for i in _nlu_items(d, kind, name)]
    if len(found) > 1:
        places = "、".join(edit.name(d.path) for d, _ in found)
        raise EditError(f"{kind} '{name}' 分散在多处（{places}），请直接编辑这些文件或先合并为一处。")
    return found[0] if found else None


def _responses(document: _Document) -> Any:
    responses = document.data.get("responses") if isinstance(document.data, dict) else None
    return responses if isinstance(responses, dict) else {}


def _rules(document: _Document) -> list[Any]:
    rules = document.data.get("rules") if isinstance(document.data, dict) else None
    return rules if isinstance(rules, list) else []


def _entries(document: _Document) -> list[Any]:
    entries = document.data.get("entries") if isinstance(document.data, dict) else None
    return entries if isinstance(entries, list) else []


def _answer_out_of_scope(edit: _Edit) -> None:
    """The rule out_of_scope → utter_out_of_scope when no rule or story handles the intent, and the response
    when a rule names it and no file has it."""
    flows = [f for d in edit.all() for f in _rules(d) + _stories(d) if isinstance(f, dict)]
    steps = [s for f in flows for s in f.get("steps") or [] if isinstance(s, dict)]
    if not any(s.get("intent") == "out_of_scope" for s in steps):
        home = _home(edit, lambda d: len(_rules(d)))
        home.data.setdefault("rules", CommentedSeq()).append(CommentedMap(
            {"rule": "answer out of scope", "steps": [{"intent": "out_of_scope"}, {"action": OUT_OF_SCOPE_RESPONSE}]}))
        edit.change(home)
    elif not any(s.get("action") == OUT_OF_SCOPE_RESPONSE for s in steps):
        return
    if not any(OUT_OF_SCOPE_RESPONSE in _responses(d) for d in edit.all()):
        home = _home(edit, lambda d: len(_responses(d)))
        home.data.setdefault("responses", CommentedMap())[OUT_OF_SCOPE_RESPONSE] = _variants(
            [{"text": OUT_OF_SCOPE_TEXT}])
        edit.change(home)


def _stories(document: _Document) -> list[Any]:
    stories = document.data.get("stories") if isinstance(document.data, dict) else None
    return stories if isinstance(stories, list) else []


# --- the editor -----------------------------------------------------------------------------------------------

Versions = Mapping[str, str] | None  # file name -> the version an edit was based on (checked when given)


class DataEditor:
    """Edits to one project's training data and knowledge base; each method returns the new versions of the
    files it wrote and records an audit entry `trainer.<method>`."""

    def __init__(self, nlu_dir: Path, knowledge_dir: Path, audit: AuditFn) -> None:
        self.nlu_dir = nlu_dir
        self.knowledge_dir = knowledge_dir
        self.audit = audit

    # --- nlu ---

    def add_examples(self, intent: str, texts: list[str], *, actor: str, versions: Versions = None
                     ) -> dict[str, str]:
        """Append the texts an existing intent does not have yet."""
        return self._append_examples(intent, texts, actor, versions, "add_examples")

    def mark_out_of_scope(self, texts: list[str], *, actor: str, versions: Versions = None) -> dict[str, str]:
        """Examples of Rasa's `out_of_scope` intent (its block is created when there is none). A project that
        does not answer the intent yet also gets the rule out_of_scope → utter_out_of_scope and a default
        response (as the bundled bot's out_of_scope.yml has them): else these messages get the fallback."""
        return self._append_examples("out_of_scope", texts, actor, versions, "mark_out_of_scope",
                                     then=_answer_out_of_scope)

    def _append_examples(self, intent: str, texts: list[str], actor: str, versions: Versions, action: str,
                         then: Callable[[_Edit], None] | None = None) -> dict[str, str]:
        texts = clean_texts(texts)
        with self._nlu() as edit:
            found = _find_block(edit, "intent", intent)
            if found is None and intent != "out_of_scope":
                raise EditNotFound(f"没有意图 {intent}，请选择已有意图，或新建意图。")
            document, item = found or _new_block(edit, "intent", intent, None)
            have = {normalised(t) for t in block_texts(item)}
            _write_block(item, block_texts(item) + [t for t in texts if normalised(t) not in have])
            edit.change(document)
            if then is not None:
                then(edit)
            return self._done(edit, versions, parse_file, actor, action, intent, {"texts": texts})

    def create_intent(self, name: str, examples: list[str], response_text: str, *, actor: str,
                      file: str | None = None, versions: Versions = None) -> dict[str, str]:
        """The intent's examples, a response `utter_<name>` and a rule intent → response."""
        examples, response = clean_texts(examples), f"utter_{name}"
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise EditError(f"意图名「{name}」只能包含英文字母、数字和下划线，例如 ask_card_fee。")
        if not examples or not response_text.strip():
            raise EditError("新建意图需要至少一条例句和一条回复。")
        with self._nlu() as edit:
            if _find_block(edit, "intent", name) or any(response in _responses(d) for d in edit.all()):
                raise EditError(f"意图 {name} 或回复 {response} 已存在，请改为向它添加例句。")
            document, item = _new_block(edit, "intent", name, file or TRAINER_FILE)
            _write_block(item, examples)
            edit.change(document)
            home = _home(edit, lambda d: len(_responses(d)))
            home.data.setdefault("responses", CommentedMap())[response] = _variants([{"text": response_text}])
            edit.change(home)
            home = _home(edit, lambda d: len(_rules(d)))
            home.data.setdefault("rules", CommentedSeq()).append(CommentedMap(
                {"rule": f"respond to {name}", "steps": [{"intent": name}, {"action": response}]}))
            edit.change(home)
            return self._done(edit, versions, parse_file, actor, "create_intent", name,
                              {"examples": examples, "response": response_text})

    def set_examples(self, intent: str, texts: list[str], *, actor: str, version: str | None) -> dict[str, str]:
        return self._set_block("intent", intent, texts, actor=actor, version=version)

    def set_synonym(self, value: str, texts: list[str], *, actor: str, version: str | None) -> dict[str, str]:
        return self._set_block("synonym", value, texts, actor=actor, version=version)

    def set_lookup(self, name: str, texts: list[str], *, actor: str, version: str | None) -> dict[str, str]:
        return self._set_block("lookup", name, texts, actor=actor, version=version)

    def set_regex(self, name: str, patterns: list[str], *, actor: str, version: str | None) -> dict[str, str]:
        return self._set_block("regex", name, patterns, actor=actor, version=version)

    def _set_block(self, kind: str, name: str, texts: list[str], *, actor: str, version: str | None
                   ) -> dict[str, str]:
        texts = clean_texts(texts)
        if not texts:
            raise EditError(f"{kind} '{name}' 至少需要一条内容；不再需要时请直接在文件中删除。")
        with self._nlu() as edit:
            found = _single_block(edit, kind, name)
            if found is not None:
                edit.change(found[0], version)
            document, item = found or _new_block(edit, kind, name, None)
            _write_block(item, texts)
            edit.change(document)
            return self._done(edit, None, parse_file, actor, f"set_{kind}", name, {"texts": texts})

    def set_response(self, name: str, variants: list[dict[str, Any]], *, actor: str, version: str | None
                     ) -> dict[str, str]:
        """Replace a response's variants (each `{text, channel?, buttons?, ...}`); unchanged ones keep their
        formatting."""
        if not variants:
            raise EditError(f"回复 {name} 至少需要一条内容。")
        with self._nlu() as edit:
            document = next((d for d in edit.all() if name in _responses(d)), None)
            if document is not None:
                edit.change(document, version)
            document = document or _home(edit, lambda d: len(_responses(d)))
            responses = document.data.setdefault("responses", CommentedMap())
            old = list(responses.get(name) or [])
            responses[name] = _variants(variants, old)
            edit.change(document)
            return self._done(edit, None, parse_file, actor, "set_response", name, {"variants": variants})

    # --- knowledge ---

    def add_similar_questions(self, entry_id: str, texts: list[str], *, actor: str, versions: Versions = None
                              ) -> dict[str, str]:
        texts = clean_texts(texts)
        with self._knowledge() as edit:
            document, entry = self._entry(edit, entry_id)
            have = {normalised(str(q)) for q in [entry.get("question", ""), *(entry.get("similar") or [])]}
            added = [t for t in texts if normalised(t) not in have]
            if "similar" not in entry or entry["similar"] is None:
                entry.insert(list(entry).index("question") + 1 if "question" in entry else len(entry), "similar",
                             CommentedSeq())
            entry["similar"].extend(added)
            edit.change(document)
            return self._done(edit, versions, load_knowledge, actor, "add_similar_questions", entry_id,
                              {"texts": added})

    def create_entry(self, category: str, question: str, similar: list[str], answer: str, *, actor: str,
                     versions: Versions = None) -> tuple[str, dict[str, str]]:
        """A new entry with the next free id of its category's scheme; (id, versions)."""
        fields = {"category": category.strip(), "question": question.strip(),
                  "similar": [s for s in clean_texts(similar) if normalised(s) != normalised(question)],
                  "answer": answer.strip()}
        with self._knowledge() as edit:
            entry_id = next_entry_id([plain(e) for d in edit.all() for e in _entries(d)], fields["category"])
            _validate_entry({"id": entry_id, **fields})
            document = _home(edit, lambda d: sum(str(e.get("category")) == category for e in _entries(d)))
            entries = document.data.setdefault("entries", CommentedSeq())
            entry = CommentedMap({"id": entry_id, **{k: v for k, v in fields.items() if v}})
            entry["answer"] = _like(_sample_answer(entries), fields["answer"])
            entries.append(entry)
            edit.change(document)
            return entry_id, self._done(edit, versions, load_knowledge, actor, "create_entry", entry_id, fields)

    def update_entry(self, entry_id: str, fields: dict[str, Any], *, actor: str, version: str | None
                     ) -> dict[str, str]:
        """Change some fields of an entry (a None value removes an optional field); its id stays."""
        unknown = set(fields) - ENTRY_FIELDS
        if unknown:
            raise EditError(f"知识条目没有这些字段：{'、'.join(sorted(unknown))}。")
        with self._knowledge() as edit:
            document, entry = self._entry(edit, entry_id)
            edit.change(document, version)
            _validate_entry({**plain(entry), **{k: v for k, v in fields.items() if v is not None}},
                            removed={k for k, v in fields.items() if v is None})
            for key, value in fields.items():
                _set_field(entry, key, value)
            return self._done(edit, None, load_knowledge, actor, "update_entry", entry_id, fields)

    def _entry(self, edit: _Edit, entry_id: str) -> tuple[_Document, Any]:
        for document in edit.all():
            for entry in _entries(document):
                if str(entry.get("id")) == entry_id:
                    return document, entry
        raise EditNotFound(f"知识库中没有编号为 {entry_id} 的条目，可能已被删除，请重新加载。")

    # --- what the workbench shows ---

    def snapshot(self) -> dict[str, Any]:
        """Everything a trainer edits, each item with its file and that file's version (read without the lock:
        the versions are what a later edit is checked against)."""
        result: dict[str, Any] = {"intents": [], "synonyms": [], "lookups": [], "regexes": [], "responses": [],
                                  "entries": [], "files": {}}
        nlu, knowledge = _Edit(self.nlu_dir, {}), _Edit(self.knowledge_dir, {})
        for edit, documents in ((nlu, nlu.all()), (knowledge, knowledge.all() if self.knowledge_dir.is_dir() else [])):
            for document in documents:
                where = {"file": edit.name(document.path), "version": document.version}
                result["files"][where["file"]] = document.version
                for kind in NLU_KINDS:
                    key = "regexes" if kind == "regex" else f"{kind}s"
                    result[key] += [{"name": str(i[kind]), "examples": block_texts(i), **where}
                                    for i in _nlu_items(document, kind)]
                result["responses"] += [{"name": str(n), "variants": plain(v), **where}
                                        for n, v in _responses(document).items()]
                result["entries"] += [{**plain(e), **where} for e in _entries(document)]
        return result

    # --- plumbing ---

    @contextlib.contextmanager
    def _nlu(self) -> Iterator[_Edit]:
        with _locked(self.nlu_dir):
            yield _Edit(self.nlu_dir, {"version": DoubleQuotedScalarString("3.1")})

    @contextlib.contextmanager
    def _knowledge(self) -> Iterator[_Edit]:
        with _locked(self.knowledge_dir):
            yield _Edit(self.knowledge_dir, {"version": DoubleQuotedScalarString("1"), "entries": CommentedSeq()})

    def _done(self, edit: _Edit, versions: Versions, load: Callable[[Path], object], actor: str, action: str,
              target: str, details: dict[str, Any]) -> dict[str, str]:
        edit.check(versions)
        written = edit.write(load)
        self.audit(actor, f"trainer.{action}", target, {**details, "files": written})
        return written


def _variants(variants: list[dict[str, Any]], old: list[Any] | None = None) -> CommentedSeq:
    old = old or []
    result = CommentedSeq()
    for index, variant in enumerate(variants):
        clean = {k: v for k, v in variant.items() if v not in (None, [], {})}
        keep = index < len(old) and plain(old[index]) == clean
        result.append(old[index] if keep else CommentedMap(clean))
    return result


def next_entry_id(entries: list[dict[str, Any]], category: str) -> str:
    """The next number in the id scheme of the category's entries (kb-loan-0035 → kb-loan-0036), counted over
    every entry with that prefix. A new category continues the scheme when the whole base has one (kb-0004 →
    kb-0005), else starts `kb-0001`."""
    schemes = [m for e in entries if (m := NUMBERED_ID.match(str(e.get("id", ""))))]
    own = [m for e in entries if str(e.get("category")) == category and (m := NUMBERED_ID.match(str(e.get("id", ""))))]
    pool = own or (schemes if len({m["prefix"] for m in schemes}) == 1 else [])
    prefixes = [m["prefix"] for m in pool]
    prefix = max(set(prefixes), key=prefixes.count) if prefixes else "kb-"
    width = max((len(m["number"]) for m in pool if m["prefix"] == prefix), default=4)
    taken = [int(m["number"]) for m in schemes if m["prefix"] == prefix]
    return f"{prefix}{max(taken, default=0) + 1:0{width}d}"


def _validate_entry(entry: dict[str, Any], removed: set[str] | None = None) -> None:
    try:
        KnowledgeEntry.model_validate({k: v for k, v in entry.items() if k not in (removed or set())})
    except ValueError as e:
        raise EditError(f"知识条目不完整或格式不对：{e}") from e


def _sample_answer(entries: list[Any]) -> Any:
    return next((e.get("answer") for e in entries if isinstance(e, dict) and "answer" in e), None)


def _like(sample: Any, value: Any) -> Any:
    """`value` in the style of `sample`: a literal block (`|`) stays a literal block, a flow list a flow list."""
    if isinstance(value, str) and isinstance(sample, LiteralScalarString):
        return LiteralScalarString(value.rstrip("\n") + "\n")
    if isinstance(value, list):
        seq = CommentedSeq(value)
        if isinstance(sample, CommentedSeq) and sample.fa.flow_style():
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        return CommentedMap({k: _like((sample or {}).get(k) if isinstance(sample, dict) else None, v)
                             for k, v in value.items()})
    return value


def _set_field(entry: Any, key: str, value: Any) -> None:
    if value is None:
        entry.pop(key, None)
    elif plain(entry.get(key)) != value:
        entry[key] = _like(entry.get(key), value)


# --- review marks: what the inbox no longer shows -------------------------------------------------------------


def mark_messages(database: Database, texts: list[str], *, status: str, action: dict[str, Any], actor: str
                  ) -> int:
    """Record the trainer's decision for each text (by `message_key`: the same words are the same message);
    a later decision on the same text replaces the earlier one. The number of texts marked."""
    keys = list(dict.fromkeys(message_key(t) for t in texts if t.strip()))
    try:
        _mark(database, keys, status, action, actor)
    except IntegrityError:  # another trainer marked one of these texts a moment earlier: update theirs
        _mark(database, keys, status, action, actor)
    return len(keys)


def _mark(database: Database, keys: list[str], status: str, action: dict[str, Any], actor: str) -> None:
    with database.session() as session, session.begin():
        existing = {m.message_key: m for m in session.scalars(select(ReviewMark)
                                                              .where(ReviewMark.message_key.in_(keys)))}
        for key in keys:
            mark = existing.get(key) or ReviewMark(message_key=key)
            mark.status, mark.action, mark.actor, mark.at = status, action, actor, utcnow()
            session.add(mark)
