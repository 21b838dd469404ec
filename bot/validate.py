"""`bot validate` and `bot data validate`: problems in the training data, domain and knowledge base that a
trainer should fix. `rasa_checks` are Rasa's (`rasa data validate`): intents vs domain, actions and responses
used but not defined, unused responses, stories contradicting rules or each other."""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import combinations
from typing import Any

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
    errors = duplicate_examples(data) + intents_without_responses(data)
    warnings = near_duplicates(data) + divergent_variants(data)
    if data.domain_intents:  # a Rasa project: its domain must agree with its data too
        more_errors, more_warnings = rasa_checks(data, config)
        errors += more_errors
        warnings += more_warnings
    else:
        errors += unknown_rule_actions(data)
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
    """Every intent must lead somewhere: a rule or story, or a response named utter_<intent>. A retrieval
    intent (faq/ask_fees) is handled by a rule or story of its base (faq) too."""
    handled = story_intents(data)
    return [f"intent '{intent}' has no rule and no response 'utter_{intent}': the bot cannot answer it"
            for intent in data.intents
            if intent not in BUILT_IN_INTENTS and intent not in handled and intent.split("/")[0] not in handled
            and f"utter_{intent}" not in data.responses]


def story_intents(data: TrainingData) -> set[str]:
    """Intents that a rule or story (not a test story) starts a turn with."""
    return {str(step["intent"]) for story in data.rules + data.stories for step in _flat_steps(story)
            if "intent" in step}


def _flat_steps(story: dict[str, Any]) -> list[dict[str, Any]]:
    """A story's steps with the branches of `or` steps spelled out, and its rule conditions."""
    steps = [c for c in story.get("condition") or [] if isinstance(c, dict)]
    for step in story.get("steps") or []:
        steps += [b for b in step["or"] if isinstance(b, dict)] if "or" in step else [step]
    return steps


def unknown_rule_actions(data: TrainingData) -> list[str]:
    problems = []
    for rule in data.rules:
        for step in rule.get("steps", []):
            action = step.get("action", "")
            if action.startswith("utter_") and not has_response(data, action):
                problems.append(f"rule '{rule['rule']}' uses response '{action}', which is not defined")
    return problems


# --- Rasa's checks (`rasa data validate`) ---------------------------------------------------------------------

DEFAULT_INTENTS = {"restart", "back", "out_of_scope", "session_start", "nlu_fallback"}
DEFAULT_ACTIONS = {"action_listen", "action_restart", "action_session_start", "action_default_fallback",
                   "action_deactivate_loop", "action_revert_fallback_events", "action_default_ask_affirmation",
                   "action_default_ask_rephrase", "action_two_stage_fallback", "action_unlikely_intent",
                   "action_back", "action_extract_slots"}
LISTEN = "action:action_listen"
BUILTIN_ACTIONS = {"action_handoff"}  # ours (bot/dialogue/engine.py HANDOFF_ACTION): a rule hands over to a person
# responses the conversation service says by name, not from a rule: a sensitive matter's urgent step before the
# hand-over (utter_urgent_<intent>, utter_urgent_sensitive)
SERVICE_RESPONSE_PREFIXES = ("utter_urgent_",)


def validate_data(config: BotConfig) -> tuple[list[str], list[str]]:
    """`bot data validate`: Rasa's checks plus examples in two intents; (errors, warnings)."""
    try:
        data = load_training_data(config.path(config.nlu_data))
    except TrainingDataError as e:
        return [str(e)], []
    errors, warnings = rasa_checks(data, config)
    return duplicate_examples(data) + errors, warnings


def rasa_checks(data: TrainingData, config: BotConfig) -> tuple[list[str], list[str]]:
    errors = unknown_intents(data) + undefined_actions(data) + form_slot_problems(data) + contradictions(data)
    warnings = unused_intents(data) + unused_responses(data, config)
    return errors, warnings


def unknown_intents(data: TrainingData) -> list[str]:
    """Intents of the NLU data, stories and rules must be listed in the domain (when there is one)."""
    if not data.domain_intents:
        return []
    declared = set(data.domain_intents) | DEFAULT_INTENTS
    problems = [f"intent '{i}' is in the NLU data ({_first_source(data, i)}) but not in the domain's intents"
                for i in sorted({i.split("/")[0] for i in data.intents} - declared)]
    for story in data.rules + data.stories:
        for step in _flat_steps(story):
            if "intent" in step and str(step["intent"]).split("/")[0] not in declared:
                problems.append(f"{_name(story)} uses intent '{step['intent']}', which is not in the domain")
    return problems


def unused_intents(data: TrainingData) -> list[str]:
    if not data.domain_intents:
        return []
    with_examples = {i.split("/")[0] for i in data.intents}
    used = story_intents(data)
    warnings = [f"intent '{name}' is in the domain ({spec.source}) but has no NLU examples"
                for name, spec in data.domain_intents.items() if name not in with_examples | DEFAULT_INTENTS]
    warnings += [f"intent '{name}' is in the domain but no story or rule uses it"
                 for name in data.domain_intents
                 if name not in used | DEFAULT_INTENTS and f"utter_{name}" not in data.responses]
    return warnings


def undefined_actions(data: TrainingData) -> list[str]:
    """Responses, actions and forms used in stories and rules must be defined."""
    known = set(data.actions) | set(data.forms) | DEFAULT_ACTIONS | BUILTIN_ACTIONS
    known |= {f"validate_{f}" for f in data.forms}
    problems = []
    for story in data.rules + data.stories:
        for step in _flat_steps(story):
            action = str(step.get("action") or "")
            if action.startswith("utter_") and not has_response(data, action):
                problems.append(f"{_name(story)} uses response '{action}', which is not defined")
            elif action and not action.startswith("utter_") and action not in known:
                problems.append(f"{_name(story)} uses action '{action}', which is not in the domain's actions")
            loop = step.get("active_loop")
            if loop and loop not in data.forms:
                problems.append(f"{_name(story)} uses form '{loop}', which is not in the domain's forms")
    return problems


def has_response(data: TrainingData, name: str) -> bool:
    """Defined, or a retrieval intent's response action (utter_faq answers with utter_faq/<sub-intent>)."""
    return name in data.responses or any(r.startswith(f"{name}/") for r in data.responses)


def form_slot_problems(data: TrainingData) -> list[str]:
    problems = [f"form '{form}' requires slot '{slot}', which is not in the domain's slots"
                for form, slots in data.forms.items() for slot in slots if slot not in data.slots]
    if data.entities:
        problems += [f"slot '{name}' is filled from entity '{m['entity']}', which is not in the domain's entities"
                     for name, spec in data.slots.items() for m in spec.get("mappings") or []
                     if m.get("type") == "from_entity" and m.get("entity") not in data.entities]
    problems += [f"response '{name}' has a condition on slot '{c['name']}', which is not in the domain's slots"
                 for name, variants in data.responses.items() for v in variants
                 for c in v.get("condition") or [] if c.get("name") not in data.slots]
    return problems


def unused_responses(data: TrainingData, config: BotConfig) -> list[str]:
    """Responses nothing uses: not in a story or rule, not utter_<intent>, not a form's question."""
    used = {str(step["action"]) for story in data.rules + data.stories for step in _flat_steps(story)
            if "action" in step}
    used |= {f"utter_{i}" for i in data.intents} | {f"utter_{i.split('/')[0]}" for i in data.intents}
    used |= {f"utter_ask_{slot}" for slots in data.forms.values() for slot in slots}
    used |= {f"utter_ask_{form}_{slot}" for form, slots in data.forms.items() for slot in slots}
    used |= {config.dialogue.fallback_response, config.dialogue.clarify_response,
             config.dialogue.out_of_scope_response}
    return [f"response '{name}' is not used in any story or rule"
            for name in data.responses if name not in used | data.builtin_responses
            and not name.startswith(SERVICE_RESPONSE_PREFIXES)]


def contradictions(data: TrainingData) -> list[str]:
    """Stories and rules that, after the same conversation, run different actions next.

    A story's history is everything since the conversation started; a rule's is its own steps, which match
    the end of any history (unless it has `conversation_start: true`). Rules with conditions and stories with
    checkpoints or `or` steps are left out: a simple check over the written steps, not a policy's."""
    stories = [(s, p) for s in data.stories if (p := _predictions(s)) is not None]
    rules = [(r, p) for r in data.rules if not r.get("condition") and (p := _predictions(r)) is not None]
    problems = []
    seen: dict[tuple[str, ...], tuple[dict[str, Any], str]] = {}
    for story, predictions in stories:
        for history, action in predictions:
            other = seen.setdefault(history, (story, action))
            if other[1] != action:
                problems.append(_conflict(other, (story, action), history))
    for index, (rule, rule_predictions) in enumerate(rules):
        for story, predictions in stories + rules[index + 1 :]:  # each pair of rules once
            for history, action in predictions:
                for rule_history, rule_action in rule_predictions:
                    if rule_action != action and _rule_matches(rule, rule_history, history):
                        problems.append(_conflict((story, action), (rule, rule_action), history))
    return list(dict.fromkeys(problems))


def _predictions(story: dict[str, Any]) -> list[tuple[tuple[str, ...], str]] | None:
    """(history, next action) at every action of the story, with Rasa's implicit action_listen."""
    events: list[str] = []
    for step in story.get("steps") or []:
        if "or" in step or "checkpoint" in step:
            return None
        if "intent" in step or "user" in step:
            if events and not events[-1].startswith("intent:"):
                events.append(LISTEN)
            entities = sorted(str(next(iter(e))) if isinstance(e, dict) else str(e) for e in step.get("entities") or [])
            events.append(f"intent:{step.get('intent', step.get('user'))}{entities if entities else ''}")
        elif "action" in step or "bot" in step:
            events.append(f"action:{step.get('action', step.get('bot'))}")
        elif "active_loop" in step:
            events.append(f"active_loop:{step['active_loop']}")
        elif "slot_was_set" in step:
            events.append(f"slot_was_set:{step['slot_was_set']}")
    if "rule" in story and story.get("wait_for_user_input", True) and events and events[-1].startswith("action:"):
        events.append(LISTEN)
    return [(tuple(events[:i]), e) for i, e in enumerate(events) if e.startswith("action:") and i > 0]


def _rule_matches(rule: dict[str, Any], rule_history: tuple[str, ...], history: tuple[str, ...]) -> bool:
    if rule.get("conversation_start"):
        return rule_history == history
    return len(rule_history) <= len(history) and history[len(history) - len(rule_history):] == rule_history


def _conflict(first: tuple[dict[str, Any], str], second: tuple[dict[str, Any], str], history: tuple[str, ...]
              ) -> str:
    shown = ", ".join(history[-4:])
    return (f"{_name(first[0])} and {_name(second[0])} contradict each other: after [{shown}] the first runs "
            f"'{first[1].split(':', 1)[1]}', the second '{second[1].split(':', 1)[1]}'")


def _name(story: dict[str, Any]) -> str:
    kind = "rule" if "rule" in story else "story"
    return f"{kind} '{story[kind]}' ({story.get('source', '?')})"


def _first_source(data: TrainingData, intent: str) -> str:
    return next((e.source for e in data.examples if e.intent.split("/")[0] == intent), "?")
