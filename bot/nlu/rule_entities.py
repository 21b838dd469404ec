"""Rule-based entities from the training data: lookups and synonyms in a spaCy EntityRuler, plus regexes.

Runs on the folded text (same length as the original), so offsets are valid on what the customer typed.
"""

from __future__ import annotations

import re
import sys
from typing import Any

if "torch" not in sys.modules:
    # thinc (under spaCy) imports torch when it is installed: ~200 MB of memory that a blank zh pipeline with an
    # EntityRuler never uses. torch stays importable when a sentence-transformers encoder has loaded it first.
    sys.modules["torch"] = None  # type: ignore[assignment]
    import spacy

    del sys.modules["torch"]
else:
    import spacy

from bot.nlu.extractors import Entity
from bot.training_data import TrainingData

EXTRACTOR = "EntityRuler"


def entity_phrases(data: TrainingData) -> dict[str, set[str]]:
    """entity -> surface forms: lookup values, annotated example values, and synonyms of known values."""
    phrases: dict[str, set[str]] = {}
    for entity, values in data.lookups.items():
        phrases.setdefault(entity, set()).update(values)
    for example in data.examples:
        for annotated in example.entities:
            phrases.setdefault(annotated.entity, set()).add(example.text[annotated.start : annotated.end])
    for values in phrases.values():
        values.update(surface for surface, canonical in data.synonyms.items() if canonical in values)
    return phrases


class RuleEntityExtractor:
    def __init__(self, phrases: dict[str, list[str]], regexes: dict[str, list[str]],
                 synonyms: dict[str, str], fold: Any) -> None:
        self.synonyms = {fold(k): v for k, v in synonyms.items()}
        # patterns are not folded: lowercasing would turn \D into \d
        self.regexes = [(entity, re.compile(p)) for entity, patterns in regexes.items() for p in patterns]
        # character tokens: a lookup value inside a longer jieba word (上海 in 上海浦东) still matches
        self.nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "char"}}})
        patterns = [{"label": entity, "pattern": fold(value)}
                    for entity, values in phrases.items() for value in sorted(values)]
        if patterns:  # an empty EntityRuler only warns on every call
            ruler = self.nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
            ruler.add_patterns(patterns)  # type: ignore[attr-defined]

    def extract(self, folded: str) -> list[Entity]:
        entities: list[Entity] = [self._entity(ent.label_, ent.text, ent.start_char, ent.end_char)
                                  for ent in self.nlp(folded).ents]
        for entity, pattern in self.regexes:
            for match in pattern.finditer(folded):
                if match.end() > match.start():
                    entities.append(self._entity(entity, match.group(0), match.start(), match.end(), "RegexEntity"))
        return entities

    def _entity(self, name: str, text: str, start: int, end: int, extractor: str = EXTRACTOR) -> Entity:
        return {"entity": name, "value": self.synonyms.get(text, text), "start": start, "end": end,
                "extractor": extractor}
