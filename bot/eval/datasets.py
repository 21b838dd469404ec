"""Readers for the evaluation data sets: intent TSV, pair TSV, QA answers TSV and QA questions JSONL.

Formats (see the data's README): a TSV has a header line and tab-separated fields, no quoting;
a JSONL file holds one JSON object a line. A malformed row raises `DatasetError` naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OOS = "oos"


class DatasetError(ValueError):
    """An evaluation file that cannot be read; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class IntentSet:
    texts: list[str]
    labels: list[str]


@dataclass(frozen=True)
class PairSet:
    a: list[str]
    b: list[str]
    labels: list[int]


@dataclass(frozen=True)
class QAQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    candidates: tuple[str, ...]


def read_intents(path: Path) -> IntentSet:
    """`text<TAB>intent` rows."""
    texts, labels = [], []
    for line, (text, intent) in _tsv_rows(path, ("text", "intent")):
        _require(text, path, line, "empty text")
        _require(intent, path, line, "empty intent")
        texts.append(text)
        labels.append(intent)
    return IntentSet(texts, labels)


def read_intent_files(paths: list[Path]) -> IntentSet:
    sets = [read_intents(p) for p in paths]
    return IntentSet([t for s in sets for t in s.texts], [label for s in sets for label in s.labels])


def read_pairs(path: Path) -> PairSet:
    """`text_a<TAB>text_b<TAB>label` rows, label 1 = same meaning, 0 = not."""
    a, b, labels = [], [], []
    for line, (text_a, text_b, label) in _tsv_rows(path, ("text_a", "text_b", "label")):
        _require(label in ("0", "1"), path, line, f"label must be 0 or 1, got {label!r}")
        a.append(text_a)
        b.append(text_b)
        labels.append(int(label))
    return PairSet(a, b, labels)


def read_answers(path: Path) -> dict[str, str]:
    """`answer_id<TAB>answer` rows as {answer_id: answer}."""
    answers: dict[str, str] = {}
    for line, (answer_id, answer) in _tsv_rows(path, ("answer_id", "answer")):
        _require(answer_id, path, line, "empty answer_id")
        _require(answer_id not in answers, path, line, f"duplicate answer_id {answer_id!r}")
        answers[answer_id] = answer
    return answers


def read_questions(path: Path) -> list[QAQuestion]:
    """One `{"id", "question", "answers": [...], "candidates": [...]}` object a line."""
    questions = []
    for line, record in _jsonl_records(path):
        question = record.get("question")
        _require(isinstance(question, str) and question.strip(), path, line, "'question' must be a non-empty string")
        answers = _id_list(record, "answers", path, line)
        candidates = _id_list(record, "candidates", path, line)
        _require(bool(candidates), path, line, "'candidates' is empty")
        _require(set(answers) <= set(candidates), path, line, "an id in 'answers' is not among 'candidates'")
        questions.append(QAQuestion(str(record.get("id", line)), question, tuple(answers), tuple(candidates)))
    return questions


def split_pairs(pairs: PairSet, start: int, stop: int | None) -> PairSet:
    return PairSet(pairs.a[start:stop], pairs.b[start:stop], pairs.labels[start:stop])


def concat_pairs(*sets: PairSet) -> PairSet:
    return PairSet([t for s in sets for t in s.a], [t for s in sets for t in s.b],
                   [y for s in sets for y in s.labels])


# --- low level ----------------------------------------------------------------------------------------------


def _require(condition: Any, path: Path, line: int, problem: str) -> None:
    if not condition:
        raise DatasetError(f"{path}:{line}: {problem}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _tsv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the data rows, after checking the header names `columns`."""
    lines = _lines(path)
    header = next(lines, None)
    if header is None:
        raise DatasetError(f"{path}: empty file (expected a header line: {chr(9).join(columns)})")
    if [h.strip() for h in header[1].split("\t")] != list(columns):
        raise DatasetError(f"{path}:1: header must be {' <TAB> '.join(columns)}, got {header[1]!r}")
    for number, text in lines:
        if not text.strip():
            continue
        fields = [f.replace("\ufeff", "").strip() for f in text.split("\t")]
        if len(fields) != len(columns):
            raise DatasetError(f"{path}:{number}: expected {len(columns)} tab-separated fields "
                               f"({', '.join(columns)}), got {len(fields)}")
        yield number, fields


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in _lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{number}: invalid JSON ({e.msg} at column {e.colno})") from e
        _require(isinstance(record, dict), path, number, "each line must be a JSON object")
        yield number, record


def _id_list(record: dict[str, Any], key: str, path: Path, line: int) -> list[str]:
    value = record.get(key)
    _require(isinstance(value, list) and all(isinstance(v, str | int) for v in value), path, line,
             f"'{key}' must be a list of answer ids")
    return [str(v) for v in value]
