"""`bot validate`: problems in the training data and knowledge base that a trainer should fix."""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import combinations

from bot.config import BotConfig
from bot.nlu.normalise import normalise
from bot.nlu.tokenise import Tokenizer
from bot.retrieval.hybrid import char_bigrams, dice
from bot.retrieval.knowledge import KnowledgeError, load_knowledge
from bot.training_data import TrainingData, TrainingDataError, load_training_data

NEAR_DUPLICATE = 0.9
VARIANT_MIN_CHARS = 40  # variants this long are answers, not a greeting said two ways
VARIANT_MIN_OVERLAP = 0.35  # share of content words two variants of one answer have at least (of the shorter)
TEMPLATE = re.compile(r"\{[^}]*\}")
CONTENT = re.compile(r"[\u4e00-\u9fffA-Za-z]")
BUILT_IN_INTENTS = {"nlu_fallback", "oos", "out_of_scope"}


def validate_project(config: BotConfig) -> tuple[list[str], list[str]]:
    """(errors, warnings). Errors: broken files, an example in two intents, intents without a response."""
    try:
        data = load_training_data(config.path(config.nlu_data))
    except TrainingDataError as e:
        return [str(e)], []
    errors = duplicate_examples(data) + intents_without_responses(data) + unknown_rule_actions(data)
    warnings = near_duplicates(data) + divergent_variants(data)
    knowledge_dir = config.path(config.retrieval.knowledge)
    if knowledge_dir.exists():
        try:
            load_knowledge(knowledge_dir)
        except KnowledgeError as e:
            errors.append(str(e))
    return errors, warnings


def duplicate_examples(data: TrainingData) -> list[str]:
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for example in data.examples:
        seen[normalise(example.text)].append((example.intent, example.source))
    problems = []
    for text, places in seen.items():
        intents = sorted({intent for intent, _ in places})
        if len(intents) > 1:
            where = ", ".join(f"{intent} ({source})" for intent, source in places)
            problems.append(f"the example '{text}' is in {len(intents)} intents: {where}")
    return problems


def near_duplicates(data: TrainingData) -> list[str]:
    """Examples of different intents whose character bigrams almost coincide."""
    prepared = [(e, char_bigrams(normalise(e.text))) for e in data.examples]
    warnings = []
    for (a, bigrams_a), (b, bigrams_b) in combinations(prepared, 2):
        if a.intent != b.intent and len(bigrams_a) > 2 and dice(bigrams_a, bigrams_b) >= NEAR_DUPLICATE:
            if normalise(a.text) != normalise(b.text):
                warnings.append(f"near-duplicate examples in different intents: '{a.text}' ({a.intent}, "
                                f"{a.source}) and '{b.text}' ({b.intent}, {b.source})")
    return warnings


def divergent_variants(data: TrainingData) -> list[str]:
    """Variants of one response (for the same channel) that answer different things: one is picked at random,
    so the same question would get different answers. Short variants (greetings, thanks) are left alone."""
    tokenizer = Tokenizer()
    warnings = []
    for name, variants in data.responses.items():
        by_channel: dict[str | None, list[str]] = defaultdict(list)
        for variant in variants:
            text = str(variant.get("text", ""))
            if len(text) >= VARIANT_MIN_CHARS:
                by_channel[variant.get("channel")].append(text)
        for channel, texts in by_channel.items():
            words = [_content_words(tokenizer, t) for t in texts]
            overlap = min((len(a & b) / max(1, min(len(a), len(b))) for a, b in combinations(words, 2)), default=1)
            if overlap < VARIANT_MIN_OVERLAP:
                where = f" (channel {channel})" if channel else ""
                warnings.append(f"response '{name}'{where}: its variants share {overlap:.0%} of their content words; "
                                "each variant must answer the same question completely (put sub-topics in a "
                                "knowledge entry or an intent of their own)")
    return warnings


def _content_words(tokenizer: Tokenizer, text: str) -> set[str]:
    return {w for w in tokenizer.tokenize(TEMPLATE.sub("", normalise(text))) if len(w) >= 2 and CONTENT.search(w)}


def intents_without_responses(data: TrainingData) -> list[str]:
    """Every intent must lead somewhere: a rule, or a response named utter_<intent>."""
    ruled = {step["intent"] for rule in data.rules for step in rule.get("steps", []) if "intent" in step}
    return [f"intent '{intent}' has no rule and no response 'utter_{intent}': the bot cannot answer it"
            for intent in data.intents
            if intent not in BUILT_IN_INTENTS and intent not in ruled and f"utter_{intent}" not in data.responses]


def unknown_rule_actions(data: TrainingData) -> list[str]:
    problems = []
    for rule in data.rules:
        for step in rule.get("steps", []):
            action = step.get("action", "")
            if action.startswith("utter_") and action not in data.responses:
                problems.append(f"rule '{rule['rule']}' uses response '{action}', which is not defined")
    return problems
