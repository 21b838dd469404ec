"""The dialogue engine: what the bot does with one understood message, given the conversation's state.

In Rasa's terms: slots are filled from the message by their domain mappings; an active form (`active_loop`)
asks for each required slot, validates through its `validate_<form>` action, re-asks with the reason, can be
cancelled (取消/算了) and survives an interruption (an FAQ question is answered, then the form asks again);
rules map intents to responses, custom actions (rasa_sdk, through an `ActionRunner`) and forms; knowledge
questions get the knowledge base's answer; an ambiguous message gets "您是不是想问…" with the top 3; a message
not understood `offer_human_after` times in a row (one less than `handoff.max_fallbacks`) gets the offer of a
human. A short follow-up such as "那信用卡呢" is read in the frame of the previous message.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from bot.config import DialogueConfig, HandoffConfig
from bot.dialogue import ranking
from bot.dialogue.actions import ActionError, ActionRunner, domain_payload, tracker_payload
from bot.dialogue.policies import PolicyEnsemble
from bot.dialogue.policies.tracker import applied_events
from bot.dialogue.responder import CONVERSATIONAL_INTENTS, Button, Reply, Responder
from bot.handoff.triggers import REQUEST_INTENT as REQUEST_HUMAN
from bot.nlu.classifier import FALLBACK_INTENT, OOS_INTENTS
from bot.training_data import TrainingData

HANDOFF_ACTION = "action_handoff"  # built in: rules end with it to hand the conversation to a person
HANDOFF_REQUESTED = "handoff_requested"  # the slot HANDOFF_ACTION sets: the intent whose rule asked for a person
MAX_ACTION_CHAIN = 5  # followup actions one turn may trigger
FOLLOW_UP = re.compile(r"^(那|那么|那要是|如果是|换成)?(?P<rest>.{1,12}?)(呢|怎么办|怎么样|行吗|可以吗)?[?？。!！]*$")
Reparse = Callable[[str], dict[str, Any]]
T = TypeVar("T")
# greetings and thanks that come with a request ("你好，我想挂失", "帮忙开通，谢谢")
COURTESY_INTENTS = frozenset({"greet", "thanks", "goodbye"})
COURTESY = re.compile(r"(非常|十分)?(谢谢|多谢|感谢|谢啦|谢了)(你|您|了)?(啦|哈|哦)?|(你|您)好(啊|呀)?|在吗|在不在"
                      r"|麻烦(你|您)了?|辛苦了|拜拜|再见|\b(hello|hi|thanks?( you)?)\b", re.IGNORECASE)
OUT_OF_SCOPE_INTENT = "out_of_scope"
# where one message asks several things: question marks, full stops, "还有/另外/顺便/以及"
QUESTION_BREAK = re.compile(r"[？?。；;!！]+|(?:还有|另外|顺便|以及|再问一下|再问下)(?:就是|一下|问一下|问下|想问)?")
MAX_QUESTIONS = 3
# a question whose answer depends on the product ("额度", "还款日", "利率"), asked without naming one
PRODUCT_INTENTS = ("credit_card_", "loan_", "mortgage", "deposit_rates")
PRODUCT_TOPIC = re.compile(r"额度|提额|还款日|逾期|延期|审批|审核|利率")
PRODUCT_NAMED = re.compile(r"卡|贷|借|存款|定期|活期|理财|储蓄|分期")  # 卡: 信用卡, 借记卡…; 贷: 房贷, 车贷…
ELLIPSIS_MAX_CHARS = 12  # "要什么条件", "那多久能批下来": short enough to lean on the previous question
CONTINUATION_WORDS = ("那", "那么", "还有", "另外", "然后")
# "为什么还款失败", "一直不能提前还款": something went wrong with the customer's own business, which a person who
# can see the account resolves better than a menu of general answers (when no answer is certain)
PROBLEM_REPORT = re.compile(r"(?<!能)不能|无法|不了|失败|没反应|没有?扣|不扣|没到账|未到账|一直|总是|跳回|又返回|还不"
                            r"|为什么|为何|借不出|未通过|不通过|没通过|怎么没|不显示|显示不|没收到|收不到|错误|出错|异常"
                            r"|被拒|拒绝")  # "能不能" asks whether something can be done: no problem yet
# a plain yes to a question the bot just asked
YES_WORDS = frozenset({"嗯", "嗯嗯", "恩", "好", "好的", "好啊", "好吧", "可以", "可以的", "是", "是的", "对", "对的",
                       "要", "需要", "行", "ok", "OK", "Ok", "麻烦了", "麻烦你了", "转吧", "转", "yes"})


def offer_threshold(max_fallbacks: int) -> int:
    """When the bot offers a person: one turn not understood before the hand-over itself (`handoff.max_fallbacks`
    in config.yml), so the customer can choose before the bot decides; at once when that is the first turn."""
    return max(1, max_fallbacks - 1)


# when the caller (bot.assistant.Assistant) does not say: from config.yml's default `handoff.max_fallbacks`
OFFER_HUMAN_AFTER = offer_threshold(HandoffConfig().max_fallbacks)

_thread_loops = threading.local()


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on this thread's own event loop, kept for the thread's next turn: a new loop
    per turn (`asyncio.run`) cost about a millisecond of every turn under load."""
    loop = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


class DialogueState(BaseModel):
    """What the bot remembers between turns (stored with the conversation)."""

    slots: dict[str, Any] = Field(default_factory=dict)
    active_loop: str | None = None
    latest_intent: str | None = None
    latest_text: str | None = None
    latest_entities: list[dict[str, Any]] = Field(default_factory=list)
    fallbacks: int = 0  # consecutive turns not understood
    paused: bool = False  # a human holds the conversation
    loop_slots: list[str] = Field(default_factory=list)  # slots set while the active form ran: its state
    human_offered: bool = False  # the last turn offered a person: "好的" now means yes, please
    # the form a person took over from and what it had collected: for the agent's context, until the bot's next turn
    handed_over_task: dict[str, Any] | None = None

    def start_afresh(self, failure_slots: list[str]) -> list[str]:
        """A person takes over: the one place every counter and mark of the bot's attempt is reset, so that what
        the customer says after the person closes the chat starts from zero - the form in progress (kept in
        `handed_over_task` for the agent's context) with its slots and attempt counters, the turns not understood,
        the offer of a person, the rule's request for one, the failure slots (`handoff.failure_slots`) and the last
        message understood.
        Returns the slots reset, for their events."""
        collected = {name: self.slots.get(name) for name in self.loop_slots if self.slots.get(name) is not None}
        if self.active_loop:
            self.handed_over_task = {"form": self.active_loop, "slots": collected}
        reset = self.leave_loop()
        for name in [*failure_slots, HANDOFF_REQUESTED]:
            if self.slots.get(name) is not None:
                self.slots[name] = None
                reset.append(name)
        self.fallbacks, self.human_offered = 0, False
        # what the bot last understood belongs to before the person: no follow-up reads it, no "0" pairs with it
        self.latest_intent, self.latest_text, self.latest_entities = None, None, []
        return reset

    def leave_loop(self) -> list[str]:
        """Leave the active form as if it never ran (cancelled, or a person took over): its slots, counters
        included, are reset. Returns the slots reset, for their events."""
        reset = [name for name in dict.fromkeys([*self.loop_slots, "requested_slot", "pending_action"])
                 if self.slots.get(name) is not None]
        for name in reset:
            self.slots[name] = None
        self.loop_slots, self.active_loop = [], None
        return reset


@dataclass
class TurnOutcome:
    state: DialogueState
    parse: dict[str, Any]  # the parse the turn acted on (a follow-up's is that of the rewritten question)
    events: list[dict[str, Any]] = field(default_factory=list)  # Rasa events to store, in order
    replies: list[Reply] = field(default_factory=list)
    # ReminderScheduled / ReminderCancelled events still in force at the end of the turn, in order
    reminders: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Turn:
    """Working memory of one turn."""

    sender_id: str
    channel: str
    parse: dict[str, Any]
    history: list[dict[str, Any]]
    state: DialogueState
    events: list[dict[str, Any]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    reminders: list[dict[str, Any]] = field(default_factory=list)
    before: DialogueState | None = None  # the state before the customer's message (UserUtteranceReverted)
    keep_latest: bool = False  # the message was reverted or the conversation restarted: it is not "latest"
    stopped: bool = False  # Restarted or UserUtteranceReverted: no further action this turn, as in Rasa

    def __post_init__(self) -> None:
        self.before = self.state.model_copy(deep=True)

    def set_slot(self, name: str, value: Any) -> None:
        self.state.slots[name] = value
        if self.state.active_loop and name not in self.state.loop_slots:
            self.state.loop_slots.append(name)
        self.events.append({"event": "slot", "name": name, "value": value})

    def set_loop(self, name: str | None) -> None:
        self.state.active_loop = name
        self.events.append({"event": "active_loop", "name": name})

    def action(self, name: str) -> None:
        self.events.append({"event": "action", "name": name})


class DialogueEngine:
    def __init__(self, data: TrainingData, config: DialogueConfig, responder: Responder,
                 runner: ActionRunner | None = None, reparse: Reparse | None = None,
                 policies: PolicyEnsemble | None = None, language: str = "zh",
                 carry_over_slots: bool = False, offer_human_after: int = OFFER_HUMAN_AFTER) -> None:
        self.data = data
        self.offer_human_after = offer_human_after  # turns not understood in a row before a person is offered
        self.language = language
        self.carry_over_slots = carry_over_slots  # a new session keeps the previous one's slots (Rasa's default)
        # trained from stories and rules (a Rasa project): they choose the actions; without them, rules do
        self.policies = policies
        self.config = config
        self.responder = responder
        self.runner = runner
        self.reparse = reparse
        self.rules = _intent_rules(data.rules)
        # how a clarification menu names an intent: its first training example, in a customer's words
        self.titles = {e.intent: e.text for e in reversed(data.examples)
                       if e.intent not in CONVERSATIONAL_INTENTS and e.intent not in OOS_INTENTS}
        self.form_submits = _form_submits(data.rules)
        # the bank's credit card or loan question, only for a project with both kinds of intents (the bundled bot)
        self.asks_product = all(any(i.startswith(kind) for i in data.intents) for kind in PRODUCT_INTENTS[:2])
        self.domain = domain_payload(intents=data.intents, entities=sorted({*data.lookups, *data.regexes}),
                                     slots=data.slots, responses=data.responses, actions=data.actions,
                                     forms=data.forms)

    def turn(self, state: DialogueState, parse: dict[str, Any], channel: str, sender_id: str,
             history: list[dict[str, Any]] | None = None) -> TurnOutcome:
        """Blocking wrapper of `next_turn`, for callers outside an event loop (the service runs in threads)."""
        return run_blocking(self.next_turn(state, parse, channel, sender_id, history or []))

    @property
    def starts_sessions(self) -> bool:
        """Whether a new session does anything: slots carried over, or the project's own action_session_start."""
        return self.carry_over_slots or (SESSION_START in self.data.actions and self.runner is not None)

    def session_start(self, state: DialogueState, previous_slots: dict[str, Any], channel: str,
                      sender_id: str) -> TurnOutcome:
        """Blocking wrapper of `start_session`."""
        return run_blocking(self.start_session(state, previous_slots, channel, sender_id))

    async def start_session(self, state: DialogueState, previous_slots: dict[str, Any], channel: str,
                            sender_id: str) -> TurnOutcome:
        """Rasa's action_session_start, for the first message of a new session (the store has logged
        `session_started`): the project's own action, which sees the previous session's slots and returns those
        to keep, else the default one, which carries every slot over when `carry_over_slots`."""
        parse: dict[str, Any] = {"intent": {"name": "session_start", "confidence": 1.0}, "entities": [], "text": ""}
        turn = _Turn(sender_id, channel, parse, [], state.model_copy(deep=True))
        if SESSION_START in self.data.actions and self.runner is not None:
            await self._custom_session_start(turn, previous_slots)
        elif self.carry_over_slots:
            turn.action(SESSION_START)
            for name, value in previous_slots.items():
                if value is not None and name in self.data.slots:
                    turn.set_slot(name, value)
        return TurnOutcome(turn.state, parse, turn.events, turn.replies, turn.reminders)

    async def _custom_session_start(self, turn: _Turn, previous_slots: dict[str, Any]) -> None:
        turn.action(SESSION_START)
        tracker = tracker_payload(turn.sender_id, previous_slots, {}, [], paused=False)
        try:
            result = await self.runner.run(SESSION_START, tracker, self.domain)  # type: ignore[union-attr]
        except ActionError as e:
            turn.events.append({"event": "action_execution_failed", "name": SESSION_START, "reason": str(e)[:300]})
            return
        turn.replies += self._responses(turn, result.responses)
        # SessionStarted is logged already; the listen that ends the action is the message that came
        self._apply(turn, [e for e in result.events if e.get("event") not in ("session_started", "action")])

    async def next_turn(self, state: DialogueState, parse: dict[str, Any], channel: str, sender_id: str,
                        history: list[dict[str, Any]]) -> TurnOutcome:
        if state.paused and parse["intent"]["name"] != RESTART_INTENT:
            return TurnOutcome(state.model_copy(deep=True), parse)  # ConversationPaused: Rasa runs no action
        turn = _Turn(sender_id, channel, parse, history, state.model_copy(deep=True))
        turn.parse = self._accepts_offer(turn) or self._without_courtesy(turn) or self._follow_up(turn)
        turn.parse = self._in_context(turn) or turn.parse
        turn.state.human_offered = False
        turn.state.handed_over_task = None
        payload = _button_payload(parse.get("text", ""))
        if turn.state.active_loop == TWO_STAGE_FALLBACK:
            await self._continue_two_stage(turn)
        elif turn.state.active_loop and self._cancels(turn):
            await self._cancel_form(turn)
        elif turn.state.active_loop:
            await self._continue_form(turn, payload)
        elif parts := self._questions(turn):
            await self._respond_each(turn, parts)
        else:
            self._fill_slots(turn, requested=None)
            await self._respond(turn)
        if not turn.keep_latest:
            turn.state.latest_intent = turn.parse["intent"]["name"]
            # what the customer meant, in full: a follow-up's rewritten question, so the next follow-up builds on it
            turn.state.latest_text = turn.parse.get("follow_up_of") or turn.parse.get("text")
            turn.state.latest_entities = list(turn.parse.get("entities", []))
        return TurnOutcome(turn.state, turn.parse, turn.events, turn.replies, turn.reminders)

    # --- outside a form ------------------------------------------------------------------------------------

    async def _respond(self, turn: _Turn) -> None:
        if self._out_of_scope(turn):
            turn.state.fallbacks = 0
            turn.replies += self._utter(turn, self.config.out_of_scope_response)
            return
        intent = turn.parse["intent"]
        retrieval = turn.parse.get("retrieval") or {"decision": "none", "top": None, "alternatives": []}
        actions = self._predicted_actions(turn) if self.policies else self._rule_actions(intent["name"], turn.state)
        if self._product_unclear(turn):
            turn.replies += self._which_product(turn)
            return
        if actions[:1] == [TWO_STAGE_FALLBACK] and intent["name"] == FALLBACK_INTENT:  # ask, never guess
            await self._run_actions(turn, actions)
            return
        answer = self._calibrated_answer(turn, retrieval, actions) if self.config.calibration \
            else self._thresholded_answer(intent, retrieval, actions)
        if answer == "intent":
            turn.state.fallbacks = 0
            await self._run_actions(turn, actions)
        elif answer is not None:
            turn.state.fallbacks = 0
            turn.replies.append(Reply(text=answer["answer"], source=answer["id"]))
        else:
            self._not_sure(turn, retrieval)

    def _thresholded_answer(self, intent: dict[str, Any], retrieval: dict[str, Any],
                            actions: list[str]) -> str | dict[str, Any] | None:
        """Without a calibration, each source by its own threshold: "intent" (run its rule), a knowledge entry
        (its answer), or None (not sure)."""
        confident = intent["confidence"] >= self._threshold(intent["name"])
        # a task (custom action or form) does something for the customer: it beats a similar FAQ answer
        if actions and confident and (_is_task(actions) or not self.responder.knowledge_wins(intent, retrieval)):
            return "intent"
        return retrieval["top"] if retrieval["decision"] == "answer" else None

    def _calibrated_answer(self, turn: _Turn, retrieval: dict[str, Any],
                           actions: list[str]) -> str | dict[str, Any] | None:
        """The best of one calibrated list of intents and entries, when it is probably right; a greeting or a
        thanks (nothing a knowledge entry answers) by its own threshold."""
        intent = turn.parse["intent"]
        if intent["name"] in CONVERSATIONAL_INTENTS or turn.parse.get("follow_up_of"):
            # greetings and thanks (no entry answers them), and a follow-up read with the previous question
            # (`_in_context` took that reading because its intent is confident): by the intent's own threshold
            return "intent" if actions and intent["confidence"] >= self._threshold(intent["name"]) else None
        assert self.config.calibration is not None
        likely = [c for c in ranking.rank(turn.parse, self.config.calibration)
                  if c.probability >= self.config.answer_probability]
        task = next((c for c in likely if c.kind == "intent" and c.id == intent["name"]), None)
        if task is not None and actions and _is_task(actions):
            return "intent"  # a task does something for the customer: it beats a similar FAQ answer
        best = likely[0] if likely else None
        if task is not None and actions and retrieval["decision"] != "answer" \
                and intent["confidence"] >= self._threshold(intent["name"]):
            return "intent"  # no entry is decisive (only a menu of them), the likely intent is sure: it answers
        if best is None or (best.kind == "intent" and (best.id != intent["name"] or not actions)):
            return None
        if best.kind == "intent":
            return "intent"
        # an entry answers only with a clear lead over the next one (retrieval's decisive margin)
        return retrieval["top"] if retrieval["decision"] == "answer" and retrieval["top"]["id"] == best.id else None

    def _product_unclear(self, turn: _Turn) -> bool:
        """"额度什么时候能提高": a limit, a due date, an approval or a rate differ between a credit card and a
        loan, and the message names neither."""
        text = turn.parse.get("text", "")
        intent = turn.parse["intent"]["name"]
        return self.asks_product and len(text) <= 16 and intent.startswith(PRODUCT_INTENTS) \
            and PRODUCT_TOPIC.search(text) is not None and PRODUCT_NAMED.search(text) is None \
            and PROBLEM_REPORT.search(text) is None

    def _which_product(self, turn: _Turn) -> list[Reply]:
        text = turn.parse.get("text", "").rstrip("？?。.!！ ")
        buttons = [Button(title=product, payload=f"{product}{text}") for product in ("信用卡", "贷款")]
        return [reply.model_copy(update={"buttons": [*reply.buttons, *buttons]})
                for reply in self._say(turn, "utter_clarify_product", source="clarify_product")]

    def _threshold(self, intent: str) -> float:
        """How confident an intent must be to answer: a greeting or a thanks risks little, a bank answer a lot."""
        if intent in CONVERSATIONAL_INTENTS:
            return min(self.config.conversational_threshold, self.config.intent_answer_threshold)
        return self.config.intent_answer_threshold

    def _not_sure(self, turn: _Turn, retrieval: dict[str, Any]) -> None:
        """No answer is certain enough: a menu of what it may be, a person for a clear request that matches
        nothing, or "please say it another way" (and a person after that)."""
        scored = self._menu(turn, retrieval)
        if self._probably_out_of_scope(turn, scored):
            turn.state.fallbacks = 0
            turn.replies += self._utter(turn, "utter_out_of_scope")
            return
        turn.state.fallbacks += 1
        options = [button for _, button in scored]
        if turn.state.fallbacks >= self.offer_human_after:
            turn.replies += self._offer_human(turn)
        elif PROBLEM_REPORT.search(turn.parse.get("text", "")):
            turn.replies += self._offer_human(turn, "utter_offer_human_problem")
        elif options:
            turn.replies += self.responder.clarify(options, turn.channel)
        elif len(turn.parse.get("text", "")) >= self.config.long_message_chars:
            turn.replies += self._offer_human(turn, "utter_offer_human_unmatched")
        else:
            turn.replies += self._utter(turn, self.config.fallback_response)

    def _probably_out_of_scope(self, turn: _Turn, scored: list[tuple[float, Button]]) -> bool:
        """The likeliest reading, though not a certain one, is a matter no bank handles."""
        intent = turn.parse["intent"]
        if intent["name"] == FALLBACK_INTENT:
            intent = next(iter(turn.parse.get("intent_ranking", [])[1:2]), intent)
        likely = intent["name"] == OUT_OF_SCOPE_INTENT and intent["confidence"] >= self.config.menu_min_confidence
        return likely and all(score < intent["confidence"] for score, _ in scored) and \
            "utter_out_of_scope" in self.responder.responses

    def _menu(self, turn: _Turn, retrieval: dict[str, Any]) -> list[tuple[float, Button]]:
        """The plausible meanings, best first, with their scores: intents that do something for the customer
        and knowledge entries, each above the minimum score."""
        scored: list[tuple[float, Button]] = []
        for kind, name, score in self._menu_candidates(turn):
            if kind == "intent":
                title = self.titles.get(name)
                if title and self._handles(turn, name):
                    scored.append((score, Button(title=title, payload=f"/{name}")))
            else:
                question = next(e["question"] for e in retrieval.get("alternatives") or [] if e["id"] == name)
                scored.append((score, Button(title=question, payload=question)))
        options: list[tuple[float, Button]] = []
        for score, button in sorted(scored, key=lambda item: -item[0]):
            if button.title not in {o.title for _, o in options}:
                options.append((score, button))
        return options[: self.config.menu_size]

    def _handles(self, turn: _Turn, intent: str) -> bool:
        """Whether the bot does something with `intent` here: a rule for it, or (a project with policies) an
        action they predict after it, from a story, other than listening or the fallback."""
        if self._rule_actions(intent, turn.state):
            return True
        if self.policies is None:
            return False
        chosen = {**turn.parse, "intent": {"name": intent, "confidence": 1.0}}
        action = self.policies.predict(self._policy_events(turn, chosen)).action
        return action not in (ACTION_LISTEN, self._fallback_action, turn.state.active_loop)

    def _menu_candidates(self, turn: _Turn) -> list[tuple[str, str, float]]:
        """(kind, id, score) of the intents and entries good enough to be menu options: by calibrated probability
        when there is a calibration, else by each source's own confidence."""
        if self.config.calibration:
            return [(c.kind, c.id, c.probability) for c in ranking.rank(turn.parse, self.config.calibration)
                    if c.probability >= self.config.menu_probability]
        floor = self.config.menu_min_confidence
        intents = [("intent", r["name"], r["confidence"]) for r in turn.parse.get("intent_ranking", [])]
        entries = [("knowledge", e["id"], e["confidence"])
                   for e in (turn.parse.get("retrieval") or {}).get("alternatives") or []]
        return [candidate for candidate in [*intents, *entries] if candidate[2] >= floor]

    def _out_of_scope(self, turn: _Turn) -> bool:
        """About another institution's product (微粒贷, 借呗…): no answer of ours fits, whatever the intent."""
        named = {e["entity"] for e in turn.parse.get("entities", [])}
        return bool(named & set(self.config.out_of_scope_entities)) and \
            bool(self.responder.responses.get(self.config.out_of_scope_response))

    def _rule_actions(self, intent: str, state: DialogueState) -> list[str]:
        """The actions of the most specific rule for `intent` whose conditions hold (none: an empty list)."""
        for conditions, actions in self.rules.get(intent, []):
            if all(_condition_holds(c, state) for c in conditions):
                return actions
        return []

    # --- actions chosen by the trained policies (a project with stories or `policies:`) ----------------------

    def _predicted_actions(self, turn: _Turn) -> list[str]:
        """The first action the policies predict after this message; the fallback action when they would only
        listen, so that an understood message never meets silence. A message the NLU did not understand
        (nlu_fallback) that no rule handles is left to the answering policy."""
        assert self.policies is not None
        loop = turn.state.active_loop
        if loop:  # we are here because the form did not take the message: Rasa's rejection, rules decide
            turn.events.append({"event": "action_execution_rejected", "name": loop})
        action = self.policies.predict(self._policy_events(turn)).action
        if action in (ACTION_LISTEN, loop):
            action = self._fallback_action
        if action == self._fallback_action and turn.parse["intent"]["name"] == FALLBACK_INTENT:
            # not understood and no rule for it: the two-stage fallback when configured as the core fallback,
            # else the answering policy's menu, or a person
            return [action] if action == TWO_STAGE_FALLBACK else []
        if action == self._fallback_action and turn.parse["intent"]["name"] == REQUEST_HUMAN:
            return [HANDOFF_ACTION]  # the customer took our offer of a person, which no story knows of
        return [action]

    async def _run_actions(self, turn: _Turn, actions: list[str]) -> None:
        """The rule's actions in order; with policies, Rasa's loop: run the predicted action, predict again over
        the tracker it changed, until the policies listen (a form that starts asks, then listens)."""
        if self.policies is None:
            for name in actions:
                await self._run(turn, name)
            return
        name = actions[0] if actions else ACTION_LISTEN
        for _ in range(MAX_PREDICTED_ACTIONS):
            loop = turn.state.active_loop
            if name in (ACTION_LISTEN, loop) or turn.stopped:
                return  # an interrupted form is asked again by _continue_form
            await self._run_predicted(turn, name)
            if turn.state.active_loop not in (None, loop) or name == HANDOFF_ACTION:
                return  # a form that started asks and listens; a person takes over
            name = self.policies.predict(self._policy_events(turn)).action

    async def _run_predicted(self, turn: _Turn, name: str) -> None:
        understood = turn.parse["intent"]["name"] not in (FALLBACK_INTENT, OUT_OF_SCOPE_INTENT)
        if name != self._fallback_action or (name == TWO_STAGE_FALLBACK and not understood):
            await self._run(turn, self.data.retrieval_response(name, turn.parse["intent"]["name"]))
            return
        # Rasa's ActionDefaultFallback: utter_default, then forget the message (UserUtteranceReverted)
        turn.action(name)
        turn.replies += self._utter(turn, self.config.fallback_response)
        self._apply(turn, [{"event": "rewind"}])

    @property
    def _fallback_action(self) -> str:
        return (self.policies.fallback[0] if self.policies else None) or DEFAULT_FALLBACK_ACTION

    def _policy_events(self, turn: _Turn, parse: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The conversation as the policies' tracker: the stored history, this message (or `parse` in its
        place) and this turn's events, with `action_listen` before each message and the names Rasa logs (a
        retrieval intent's base name and response, the form where its validation action ran)."""
        message = {"event": "user", "parse_data": parse or turn.parse}
        events: list[dict[str, Any]] = []
        last_action = None
        for event in [*turn.history, message, *turn.events]:
            kind = event.get("event")
            if kind in ("user", CLARIFIED_MESSAGE):
                events += [] if events and events[-1] == LISTEN_EVENT else [LISTEN_EVENT]
                events.append(_policy_user_event(event))
                last_action = None
            elif kind == "action":
                name = self._logged_action(str(event.get("name")))
                if not (name == last_action and name in self.data.forms):  # the form, then its validation
                    events.append({"event": "action", "name": name})
                last_action = name
            elif kind in TRACKER_EVENTS:
                events.append(event)
        return events

    def _logged_action(self, name: str) -> str:
        form = name.removeprefix("validate_")
        if form != name and form in self.data.forms:
            return form  # Rasa runs validate_<form> inside the form; only the form is logged
        return name.split("/", 1)[0]  # utter_faq/card_fees is logged as utter_faq

    def _accepts_offer(self, turn: _Turn) -> dict[str, Any] | None:
        """After "需要为您转接人工客服吗？", a plain yes (嗯/好的/可以/是的, or the affirm intent) asks for a person."""
        if not turn.state.human_offered:
            return None
        text = turn.parse.get("text", "").strip(" 。.!！~～")
        if turn.parse["intent"]["name"] != "affirm" and text not in YES_WORDS:
            return None
        return {**turn.parse, "intent": {"name": REQUEST_HUMAN, "confidence": 1.0}}

    def _without_courtesy(self, turn: _Turn) -> dict[str, Any] | None:
        """"帮忙开通，谢谢" is a request with thanks attached, not thanks: the parse of the request alone."""
        if turn.parse["intent"]["name"] not in COURTESY_INTENTS or not self.reparse:
            return None
        text = turn.parse.get("text", "")
        request = COURTESY.sub("", text).strip(" ，,。.!！~～、")
        if len(request) < 2 or request == text:
            return None
        reparsed = self.reparse(request)
        if reparsed["intent"]["name"] in COURTESY_INTENTS:
            return None
        return {**reparsed, "text": text, "courtesy_removed": request}

    def _questions(self, turn: _Turn) -> list[dict[str, Any]] | None:
        """"信用卡账单怎么查？还有转账限额是多少": the parses of the separate questions, when the message asks at
        least two different things each of which the bot can answer with confidence."""
        if not self.reparse or turn.parse.get("follow_up_of"):
            return None
        pieces = [p.strip(" ，,") for p in QUESTION_BREAK.split(turn.parse.get("text", ""))]
        pieces = [p for p in pieces if len(p) >= 3][:MAX_QUESTIONS]
        if len(pieces) < 2:
            return None
        parts, seen = [], set()
        for piece in pieces:
            parse = self.reparse(piece)
            key = self._answer_key(parse)
            if key is not None and key not in seen:
                seen.add(key)
                parts.append(parse)
        return parts if len(parts) >= 2 else None

    def _answer_key(self, parse: dict[str, Any]) -> str | None:
        """What would answer this question with confidence (an intent that does something, or a knowledge
        entry), or None."""
        intent = parse["intent"]
        confident = intent["confidence"] >= self.config.intent_answer_threshold
        if confident and intent["name"] not in CONVERSATIONAL_INTENTS and self.rules.get(intent["name"]):
            return intent["name"]
        retrieval = parse.get("retrieval") or {}
        return retrieval["top"]["id"] if retrieval.get("decision") == "answer" else None

    async def _respond_each(self, turn: _Turn, parts: list[dict[str, Any]]) -> None:
        """Answer each question in turn; a task (a form or custom action) goes last, and only one of them: the
        customer is told to come back for the others."""
        whole = turn.parse
        tasks = [p for p in parts if any(not a.startswith("utter_") for a in self._rule_actions(
            p["intent"]["name"], turn.state)) and self._answer_key(p) == p["intent"]["name"]]
        for part in [p for p in parts if p not in tasks] + tasks[:1]:
            turn.parse = part
            self._fill_slots(turn, requested=None)
            await self._respond(turn)
        for later in tasks[1:]:
            turn.replies += self._say(turn, "utter_mention_later_question", source="several_questions",
                                      values={"text": later["text"]})
        turn.parse = {**whole, "parts": [p.get("text") for p in parts]}

    def _in_context(self, turn: _Turn) -> dict[str, Any] | None:
        """"要什么条件" or "那多久能批下来" after "我想办张信用卡": a short message that leans on the previous question
        is read together with it, when that reading is the confident one."""
        parse, state = turn.parse, turn.state
        text = parse.get("text", "")
        if state.active_loop or not state.latest_text or not self.reparse or parse.get("follow_up_of") \
                or len(text) > ELLIPSIS_MAX_CHARS or parse["intent"]["name"] in CONVERSATIONAL_INTENTS:
            return None
        leans_on_it = text.startswith(CONTINUATION_WORDS)
        alone = parse["intent"]["confidence"] if parse["intent"]["name"] not in OOS_INTENTS else 0.0
        if not leans_on_it and alone >= self.config.intent_answer_threshold:
            return None
        together = f"{state.latest_text}，{text}"
        contextual = self.reparse(together)
        confidence = contextual["intent"]["confidence"]
        if contextual["intent"]["name"] in OOS_INTENTS or confidence < self.config.intent_answer_threshold \
                or (not leans_on_it and confidence <= alone):
            return None
        return {**contextual, "text": text, "follow_up_of": together}

    def _action_failed(self, turn: _Turn, action: str) -> list[Reply]:
        """A custom action failed or timed out: say so and offer a person (a "yes" accepts)."""
        turn.state.human_offered = True
        return self._say(turn, "utter_action_failed", source=action)

    @staticmethod
    def _validation_failed(turn: _Turn, form: str, candidates: list[str]) -> None:
        """The form's validation action failed: this turn's values could not be checked, so the form does not take
        them. A form just starting ends (nothing was asked yet); one under way waits for the same slot again,
        which the customer sends again when the system is back, unless they take the person offered."""
        for name in candidates:
            turn.state.slots[name] = None
        turn.events = [e for e in turn.events if not (e.get("event") == "slot" and e.get("name") in candidates)]
        if turn.state.slots.get("requested_slot") is None:
            for slot in turn.state.leave_loop():
                turn.events.append({"event": "slot", "name": slot, "value": None})
            turn.events.append({"event": "active_loop", "name": None})

    def _offer_human(self, turn: _Turn, response: str = "utter_offer_human") -> list[Reply]:
        turn.state.human_offered = True
        return self.responder.utter(response, turn.channel, {}) or self.responder.say("utter_offer_human",
                                                                                      turn.channel, {})

    # --- actions --------------------------------------------------------------------------------------------

    async def _run(self, turn: _Turn, name: str, depth: int = 0) -> None:
        """Run one action by name: a response, a form, or a custom action."""
        if turn.stopped:  # restarted or reverted: Rasa listens for the next message
            return
        if name.startswith("utter_"):
            turn.action(name)
            turn.replies += self._utter(turn, name)
        elif name == HANDOFF_ACTION:  # a rule hands over: the conversation service queues it for a person
            turn.action(name)
            turn.set_slot(HANDOFF_REQUESTED, turn.parse["intent"]["name"])
        elif name in DEFAULT_ACTIONS and name not in self.data.actions:  # a project's own action overrides
            await self._default_action(turn, name)
        elif name in self.data.forms:
            await self._start_form(turn, name)
        elif depth < MAX_ACTION_CHAIN:
            await self._custom_action(turn, name, depth)

    async def _default_action(self, turn: _Turn, name: str) -> None:
        """Rasa's default actions that change the conversation itself."""
        turn.action(name)
        if name == ACTION_RESTART:  # utter_restart (if any), then Restarted
            turn.replies += self._utter(turn, "utter_restart")
            self._apply(turn, [{"event": "restart"}], _Snapshot.of(turn))
        elif name == ACTION_DEACTIVATE_LOOP:  # the form stops; what it collected stays
            turn.set_loop(None)
            turn.state.loop_slots = []
            turn.set_slot("requested_slot", None)
        elif name == ACTION_BACK:  # utter_back (if any); the customer's last message and its answer no longer count
            turn.replies += self._utter(turn, "utter_back")
            turn.events += [{"event": "rewind"}, {"event": "rewind"}]
            turn.state = self._replayed_state(turn)
            turn.keep_latest = turn.stopped = True
        elif name == TWO_STAGE_FALLBACK:
            turn.set_loop(TWO_STAGE_FALLBACK)
            await self._ask_affirmation(turn)

    def _replayed_state(self, turn: _Turn) -> DialogueState:
        """The state the conversation's events still in force leave (after reverts, as the policies see them)."""
        state = turn.state.model_copy(deep=True)
        state.slots, state.active_loop = self._initial_slots(), None
        for event in applied_events(self._policy_events(turn)):
            kind = event.get("event")
            if kind == "slot":
                state.slots[str(event["name"])] = event.get("value")
            elif kind == "reset_slots":
                state.slots = self._initial_slots()
            elif kind == "active_loop":
                state.active_loop = event.get("name")
        state.loop_slots = state.loop_slots if state.active_loop == turn.state.active_loop else []
        return state

    # --- Rasa's TwoStageFallbackAction: a loop that asks "did you mean…?", then to rephrase, then gives up -----

    async def _continue_two_stage(self, turn: _Turn) -> None:
        latest = self._latest_intents(turn, 3)
        turn.action(TWO_STAGE_FALLBACK)
        if latest[0] not in (FALLBACK_INTENT, OUT_OF_SCOPE_INTENT):
            await self._clarified(turn)
        elif latest[:2] == [FALLBACK_INTENT] * 2 or latest == [OUT_OF_SCOPE_INTENT, FALLBACK_INTENT,
                                                                 OUT_OF_SCOPE_INTENT]:
            # two messages not understood in a row, or the second suggestion denied too: Rasa gives up
            turn.set_loop(None)
            turn.action(DEFAULT_FALLBACK_ACTION)
            turn.replies += self._utter(turn, self.config.fallback_response)
            turn.events.append({"event": "rewind"})
            turn.keep_latest = True
        elif latest[0] == FALLBACK_INTENT:
            await self._ask_affirmation(turn)
        else:  # denied: "please say it another way"
            turn.replies += self._say(turn, "utter_ask_rephrase")

    async def _clarified(self, turn: _Turn) -> None:
        """The customer affirmed or rephrased: the exchange about the unclear message is forgotten and the
        conversation goes on as if they had said this in the first place (Rasa: UserUtteranceReverted, then
        the message again)."""
        turn.set_loop(None)
        parse = {**turn.parse, "intent": {**turn.parse["intent"], "confidence": 1.0}}
        turn.events += [{"event": "rewind"}, {"event": CLARIFIED_MESSAGE, "parse_data": parse}]
        turn.parse = parse
        await self._respond(turn)

    async def _ask_affirmation(self, turn: _Turn) -> None:
        """Rasa's action_default_ask_affirmation (the project's own if it has one): "Did you mean …?" with the
        likeliest intents and a way to say no (/out_of_scope)."""
        if ASK_AFFIRMATION in self.data.actions:
            await self._run(turn, ASK_AFFIRMATION, depth=1)
            return
        ranked = [r["name"] for r in turn.parse.get("intent_ranking", []) if r["name"] not in OOS_INTENTS]
        buttons = [Button(title=self.titles.get(name, name), payload=f"/{name}")
                   for name in ranked[: self.config.menu_size]]
        texts = self._say(turn, "utter_ask_affirmation") or [self._builtin(turn, "utter_ask_affirmation")]
        no = Button(title=self._builtin(turn, "utter_affirmation_none").text, payload=f"/{OUT_OF_SCOPE_INTENT}")
        turn.replies.append(texts[0].model_copy(update={"buttons": [*texts[0].buttons, *buttons, no]}))

    def _builtin(self, turn: _Turn, name: str) -> Reply:
        language = "zh" if self.language.lower().startswith("zh") else "en"
        return Reply(text=ENGINE_TEXTS[language][name], source=name)

    def _latest_intents(self, turn: _Turn, count: int) -> list[str | None]:
        """The intents of the latest `count` messages of this session, newest first; a reverted message ends
        the list with None (Rasa's `_last_n_intent_names`)."""
        found: list[str | None] = []
        for event in reversed([*turn.history, {"event": "user", "parse_data": turn.parse}]):
            kind = event.get("event")
            if kind in ("restart", "session_started") or len(found) == count:
                break
            if kind in ("user", CLARIFIED_MESSAGE):
                found.append(str(((event.get("parse_data") or {}).get("intent") or {}).get("name")))
            elif kind == "rewind":
                found.append(None)
        return found

    async def _custom_action(self, turn: _Turn, name: str, depth: int) -> None:
        turn.action(name)
        if self.runner is None:
            turn.replies += self._utter(turn, self.config.fallback_response)
            return
        snapshot = _Snapshot.of(turn)
        try:
            result = await self.runner.run(name, self._tracker(turn), self.domain)
        except ActionError as e:
            turn.events.append({"event": "action_execution_failed", "name": name, "reason": str(e)[:300]})
            turn.replies += self._action_failed(turn, name)
            return
        # as Rasa's RemoteAction: messages are rendered with the tracker as it was, then the events apply
        turn.replies += self._responses(turn, result.responses)
        followup = self._apply(turn, result.events, snapshot)
        if followup:
            await self._run(turn, followup, depth + 1)

    def _apply(self, turn: _Turn, events: list[dict[str, Any]], snapshot: _Snapshot | None = None) -> str | None:
        """Apply an action's events to the state, as Rasa's tracker does; returns a follow-up action to run."""
        followup = None
        for event in events:
            kind = event.get("event")
            if kind == "slot":
                turn.set_slot(event["name"], event.get("value"))
            elif kind == "active_loop":
                turn.set_loop(event.get("name"))
            elif kind == "followup":
                followup, turn.stopped = event.get("name"), False
            elif kind == "bot":
                turn.replies.append(_bot_reply(event))
            elif kind in ("restart", "rewind", "undo"):
                followup = None  # Rasa's tracker reset forgets a pending follow-up
                self._revert(turn, str(kind), snapshot or _Snapshot.of(turn))
                turn.events.append(event)
            else:
                self._record(turn, event)
        return followup

    def _record(self, turn: _Turn, event: dict[str, Any]) -> None:
        """Events that change the conversation without slots: pause, resume, reset slots, reminders."""
        kind = event.get("event")
        if kind in ("pause", "resume"):
            turn.state.paused = kind == "pause"
        elif kind == "reset_slots":
            turn.state.slots = self._initial_slots()
        elif kind == "reminder":
            event = {**event, "name": event.get("name") or uuid.uuid4().hex}  # Rasa names an unnamed reminder
            turn.reminders.append(event)
        elif kind == "cancel_reminder":
            turn.reminders.append(event)
        turn.events.append(event)

    def _revert(self, turn: _Turn, kind: str, snapshot: _Snapshot) -> None:
        """Restarted: a fresh conversation. UserUtteranceReverted: as before the customer's last message.
        ActionReverted: as before the action that returned it. Replies already given stay given."""
        if kind == "undo":
            turn.state, turn.reminders = snapshot.state.model_copy(deep=True), list(snapshot.reminders)
            return
        turn.keep_latest = turn.stopped = True
        if kind == "restart":
            turn.state = DialogueState(slots=self._initial_slots())
            turn.reminders.append({"event": "cancel_reminder", "name": None, "intent": None, "entities": None})
        else:
            assert turn.before is not None
            turn.state, turn.reminders = turn.before.model_copy(deep=True), []

    def _initial_slots(self) -> dict[str, Any]:
        return {name: spec["initial_value"] for name, spec in self.data.slots.items()
                if spec.get("initial_value") is not None}

    def _responses(self, turn: _Turn, responses: list[dict[str, Any]]) -> list[Reply]:
        """The dispatcher's messages as Rasa renders them: a `response` is filled from the message's own
        values (`utter_message(response=..., card_tail=...)`) before the slots; text, buttons, image, custom
        and attachment given with it are kept."""
        replies = []
        for message in responses:
            name = message.get("response") or message.get("template")
            rendered = self._utter(turn, name, _message_values(message)) if name else []
            if name and not rendered:
                continue  # Rasa skips a response the domain does not have
            reply = rendered[0] if rendered else Reply(text="", source="action")
            extra = _message_parts(message)
            if extra or name:
                replies.append(reply.model_copy(update={**extra, "buttons": [*reply.buttons,
                                                                              *extra.get("buttons", [])]}))
        return replies

    def _tracker(self, turn: _Turn, tail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        user = {"event": "user", "text": turn.parse.get("text"), "parse_data": turn.parse,
                "input_channel": turn.channel, "metadata": turn.parse.get("metadata") or {}}
        latest = {**turn.parse, "metadata": turn.parse.get("metadata") or {}}
        return tracker_payload(turn.sender_id, turn.state.slots, latest,
                               [*turn.history, user, *turn.events, *(tail or [])], active_loop=turn.state.active_loop,
                               paused=turn.state.paused)

    def _utter(self, turn: _Turn, name: str, values: dict[str, Any] | None = None) -> list[Reply]:
        """A response filled from `values` first (an action's keyword arguments), then slots, then entities."""
        return self.responder.utter(name, turn.channel, {**_known_values(turn), **(values or {})})

    def _say(self, turn: _Turn, name: str, source: str | None = None,
             values: dict[str, Any] | None = None) -> list[Reply]:
        """What the engine says on its own: the project's response `name`, else the built-in one in the
        project's language; `source` keeps the name replay and the agent's context know the reply by."""
        replies = self.responder.say(name, turn.channel, {**_known_values(turn), **(values or {})})
        return [r.model_copy(update={"source": source}) for r in replies] if source else replies

    # --- forms ----------------------------------------------------------------------------------------------

    async def _start_form(self, turn: _Turn, form: str) -> None:
        turn.action(form)
        turn.set_loop(form)
        # as Rasa's FormAction.activate: slots are extracted again with the form active (from_trigger_intent,
        # mappings conditioned on this form)
        self._fill_slots(turn, requested=(form, None))
        await self._validate_and_ask(turn, form)

    async def _continue_form(self, turn: _Turn, payload: bool) -> None:
        form = turn.state.active_loop
        assert form is not None
        requested = turn.state.slots.get("requested_slot")
        answered = self._fill_slots(turn, requested=(form, requested)).get(requested)
        # free text fills whatever slot was asked; a clear question of its own is still a side question
        if answered != "from_entity" and self._interrupts(turn, payload, form):
            if answered:
                turn.state.slots[requested] = None
                turn.events = [e for e in turn.events if not (e.get("event") == "slot" and e["name"] == requested)]
            await self._respond(turn)  # answer the side question, then ask again
            if turn.state.active_loop == form and not turn.stopped:
                turn.replies += self._say(turn, "utter_continue_form", source=form)
                await self._ask(turn, form, requested)
            return
        turn.state.fallbacks = 0
        turn.action(form)  # as Rasa's tracker logs it each turn, validation action or not: the policies read it
        await self._validate_and_ask(turn, form)
        if self.policies and turn.state.active_loop is None and not turn.stopped:
            # the form is done (`active_loop: null`): what follows is predicted, from rules or stories
            await self._run_actions(turn, [self.policies.predict(self._policy_events(turn)).action])

    async def _validate_and_ask(self, turn: _Turn, form: str) -> None:
        explicit_next: tuple[bool, Any] = (False, None)
        validator = f"validate_{form}"
        if validator in self.data.actions and self.runner is not None:
            # rasa_sdk validates the slot events at the very end of the tracker: this turn's candidates
            required = self.data.forms[form]
            names = dict.fromkeys(e["name"] for e in turn.events if e.get("event") == "slot" and e["name"] in required)
            candidates = [{"event": "slot", "name": n, "value": turn.state.slots.get(n)} for n in names]
            tracker = self._tracker(turn, tail=candidates)
            turn.action(validator)
            snapshot = _Snapshot.of(turn)
            try:
                result = await self.runner.run(validator, tracker, self.domain)
            except ActionError as e:
                turn.events.append({"event": "action_execution_failed", "name": validator, "reason": str(e)[:300]})
                self._validation_failed(turn, form, list(names))
                turn.replies += self._action_failed(turn, validator)
                return
            for event in result.events:
                if event.get("event") == "slot" and event.get("name") == "requested_slot":
                    explicit_next = (True, event.get("value"))
            turn.replies += self._responses(turn, result.responses)
            self._apply(turn, [e for e in result.events if e.get("name") != "requested_slot"], snapshot)
        if turn.state.active_loop != form or turn.stopped:
            return  # the validation ended the form (or restarted the conversation)
        missing = [s for s in self.data.forms[form] if turn.state.slots.get(s) is None]
        next_slot = explicit_next[1] if explicit_next[0] else (missing[0] if missing else None)
        if next_slot is None:
            await self._complete_form(turn, form)
            return
        turn.set_slot("requested_slot", next_slot)
        await self._ask(turn, form, next_slot)

    async def _ask(self, turn: _Turn, form: str, slot: str | None) -> None:
        """Ask for `slot` as Rasa's FormAction does, the first the domain has of: action_ask_<form>_<slot>,
        utter_ask_<form>_<slot>, action_ask_<slot>, utter_ask_<slot>."""
        if slot is None:
            return
        for name in (f"action_ask_{form}_{slot}", f"utter_ask_{form}_{slot}", f"action_ask_{slot}",
                     f"utter_ask_{slot}"):
            if name.startswith("action_") and name in self.data.actions:
                await self._run(turn, name)
                return
            if name.startswith("utter_") and name in self.responder.responses:
                turn.replies += self._utter(turn, name)
                return
        turn.replies += self._say(turn, "utter_ask_slot", source=f"utter_ask_{slot}", values={"slot": slot})

    async def _complete_form(self, turn: _Turn, form: str) -> None:
        turn.set_slot("requested_slot", None)
        turn.set_loop(None)
        turn.state.loop_slots = []  # done: what it collected stays for its submit action to use (or clear)
        for name in [] if self.policies else self.form_submits.get(form, []):  # with policies: predicted
            await self._run(turn, name)
        pending = turn.state.slots.get("pending_action")
        if pending and not turn.stopped:  # an action that started this form to collect what it needs resumes
            turn.set_slot("pending_action", None)
            if not turn.state.slots.get("identity_failed"):
                await self._run(turn, str(pending), depth=1)

    async def _cancel_form(self, turn: _Turn) -> None:
        form = turn.state.active_loop
        assert form is not None
        turn.state.loop_slots = [*turn.state.loop_slots, *self.data.forms.get(form, [])]
        for slot in turn.state.leave_loop():
            turn.events.append({"event": "slot", "name": slot, "value": None})
        turn.events.append({"event": "active_loop", "name": None})
        turn.replies += self._say(turn, "utter_form_cancelled")

    def _cancels(self, turn: _Turn) -> bool:
        text = turn.parse.get("text", "")
        return any(word in text for word in self.config.cancel_words) and len(text) <= 12

    def _interrupts(self, turn: _Turn, payload: bool, form: str) -> bool:
        """A message inside a form that is really another question rather than the answer asked for."""
        intent = turn.parse["intent"]
        retrieval = turn.parse.get("retrieval") or {}
        if intent["name"] in ("affirm", "deny") or form in self._rule_actions(intent["name"], turn.state):
            return False
        if payload:
            return True
        if intent["name"] in self.rules and intent["name"] not in OOS_INTENTS and intent["confidence"] >= 0.8:
            return True
        return retrieval.get("decision") == "answer"

    # --- slots ----------------------------------------------------------------------------------------------

    def _fill_slots(self, turn: _Turn, requested: tuple[str, str | None] | None) -> dict[str, str]:
        """Set the slots whose domain mappings match this message; returns {slot: mapping type that filled it}."""
        filled = {}
        form_slots = self.data.forms.get(requested[0], []) if requested else []
        loop = turn.state.active_loop
        context = _MappingContext(turn.parse, loop, requested[1] if requested else None,
                                  self._ignored_intents(loop) if loop else [])
        for slot, spec in self.data.slots.items():
            if slot in form_slots and slot != requested[1] and turn.state.slots.get(slot) is not None:  # type: ignore[index]
                continue  # an answer the form already collected is not overwritten by a stray entity
            found = _mapped_value(spec.get("mappings") or [], context, listed=spec.get("type") == "list")
            if found is None:
                continue
            kind, value = found
            filled[slot] = kind
            if turn.state.slots.get(slot) != value:
                turn.set_slot(slot, value)
        return filled

    def _ignored_intents(self, form: str) -> list[str]:
        """A form's `ignored_intents` (Rasa 3), read defensively: the training data may not keep them."""
        spec: Any = self.data.forms.get(form)
        found = spec.get("ignored_intents") if isinstance(spec, dict) else None
        if found is None:
            found = (getattr(self.data, "form_ignored_intents", None) or {}).get(form)
        return _as_list(found) if found else []

    def _follow_up(self, turn: _Turn) -> dict[str, Any]:
        """"那信用卡呢" after "借记卡丢了怎么挂失": the previous question with the new entity in place of the old."""
        parse, state = turn.parse, turn.state
        text = parse.get("text", "")
        if state.active_loop or not state.latest_text or not self.reparse or len(text) > 14:
            return parse
        if not FOLLOW_UP.fullmatch(text) or not (text.startswith(("那", "换成", "如果是")) or text.endswith("呢")):
            return parse
        for entity in parse.get("entities", []):
            for previous in state.latest_entities:
                if previous["entity"] == entity["entity"] and previous["value"] != entity["value"]:
                    old, new = state.latest_text, text[entity["start"] : entity["end"]]
                    rewritten = old[: previous["start"]] + new + old[previous["end"] :]
                    reparsed = self.reparse(rewritten)
                    reparsed["text"] = text
                    reparsed["follow_up_of"] = rewritten
                    return reparsed
        return parse


RESTART_INTENT = "restart"  # Rasa's /restart: still handled while the conversation is paused
ACTION_RESTART = "action_restart"
ACTION_BACK = "action_back"
SESSION_START = "action_session_start"
ACTION_DEACTIVATE_LOOP = "action_deactivate_loop"
TWO_STAGE_FALLBACK = "action_two_stage_fallback"
ASK_AFFIRMATION = "action_default_ask_affirmation"
DEFAULT_ACTIONS = frozenset({ACTION_RESTART, ACTION_BACK, ACTION_DEACTIVATE_LOOP, TWO_STAGE_FALLBACK})
# the message as the customer clarified it (Rasa's second UserUttered): the policies read it as the message, the
# store keeps it apart from what the customer wrote
CLARIFIED_MESSAGE = "user_clarified"
# what the engine's own loops say when the project has no response for it
ENGINE_TEXTS = {
    "zh": {"utter_ask_affirmation": "您是想问下面的哪一项吗？", "utter_affirmation_none": "都不是"},
    "en": {"utter_ask_affirmation": "Did you mean one of these?", "utter_affirmation_none": "No"},
}
# what rasa_sdk's `utter_message` puts in a message besides its keyword arguments
SDK_MESSAGE_KEYS = frozenset({"text", "buttons", "elements", "custom", "template", "response", "image", "attachment"})


@dataclass(frozen=True)
class _Snapshot:
    """The state before an action ran, for its ActionReverted."""

    state: DialogueState
    reminders: list[dict[str, Any]]

    @classmethod
    def of(cls, turn: _Turn) -> _Snapshot:
        return cls(turn.state.model_copy(deep=True), list(turn.reminders))


def _known_values(turn: _Turn) -> dict[str, Any]:
    """What a response can be filled with: the message's entities and the slots set (slots win)."""
    entities = {e["entity"]: e["value"] for e in turn.parse.get("entities", [])}
    return {**entities, **{k: v for k, v in turn.state.slots.items() if v is not None}}


def _message_values(message: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `utter_message(response=..., **kwargs)`: rasa_sdk puts them in the message."""
    return {k: v for k, v in message.items() if k not in SDK_MESSAGE_KEYS}


def _message_parts(message: dict[str, Any]) -> dict[str, Any]:
    """What a dispatcher message carries besides a response name, only the parts given (as Rasa merges them)."""
    parts: dict[str, Any] = {}
    if message.get("text"):
        parts["text"] = str(message["text"])
    if message.get("buttons"):
        parts["buttons"] = [Button(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
                            for b in message["buttons"]]
    for key in ("image", "custom", "attachment"):
        if message.get(key):
            parts[key] = message[key]
    return parts


def _bot_reply(event: dict[str, Any]) -> Reply:
    """A BotUttered event an action returned, as a reply."""
    data = event.get("data") or {}
    buttons = [Button(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
               for b in data.get("buttons") or []]
    return Reply(text=str(event.get("text") or ""), buttons=buttons, source="action", image=data.get("image"),
                 custom=data.get("custom"), attachment=data.get("attachment"))


@dataclass(frozen=True)
class _MappingContext:
    """What Rasa's slot extraction looks at: the message, the active form, its requested slot, ignored intents."""

    parse: dict[str, Any]
    active_loop: str | None
    requested: str | None
    ignored_intents: list[str]


def _mapped_value(mappings: list[dict[str, Any]], context: _MappingContext,
                  listed: bool = False) -> tuple[str, Any] | None:
    """(mapping type, value) of the first of a slot's mappings that applies to this message, by Rasa 3's rules
    (`ActionExtractSlots`); `custom` mappings are left to actions."""
    for mapping in mappings:
        kind = mapping.get("type")
        if not _intent_desired(mapping, context):
            continue
        if kind == "from_trigger_intent":
            if _trigger_condition_met(mapping, context.active_loop):
                return kind, mapping.get("value")
            continue
        if not _conditions_hold(mapping, context):
            continue
        if kind == "from_entity":
            values = _entity_values(mapping, context.parse)
            if values:
                return kind, values if listed else values[-1]
        elif kind == "from_text":
            return kind, context.parse.get("text")
        elif kind == "from_intent":
            return kind, mapping.get("value")
    return None


def _intent_desired(mapping: dict[str, Any], context: _MappingContext) -> bool:
    """`intent` lists the intents that may fill; otherwise any intent but `not_intent` and, while a form the
    mapping concerns is active, the form's `ignored_intents`."""
    intent = context.parse["intent"]["name"]
    wanted = _as_list(mapping.get("intent") or [])
    unwanted = _as_list(mapping.get("not_intent") or [])
    loops = [c.get("active_loop") for c in mapping.get("conditions") or []]
    if context.active_loop and (not loops or context.active_loop in loops):
        unwanted = [*unwanted, *context.ignored_intents]
    return intent in wanted or (not wanted and intent not in unwanted)


def _conditions_hold(mapping: dict[str, Any], context: _MappingContext) -> bool:
    """Mapping `conditions` need an active form, one of theirs, and their requested slot when they name one."""
    conditions = mapping.get("conditions") or []
    if not conditions:
        return True
    if not context.active_loop:
        return False
    return any(c.get("active_loop") == context.active_loop and
               (not c.get("requested_slot") or c["requested_slot"] == context.requested) for c in conditions)


def _trigger_condition_met(mapping: dict[str, Any], active_loop: str | None) -> bool:
    """`from_trigger_intent` fills when a form is active (it is being activated), one of its conditions' if any."""
    loops = [c.get("active_loop") for c in mapping.get("conditions") or []]
    return active_loop is not None and (not loops or active_loop in loops)


def _entity_values(mapping: dict[str, Any], parse: dict[str, Any]) -> list[Any]:
    """Values of the mapping's entity with exactly its role and group (none when it names none)."""
    return [e["value"] for e in parse.get("entities", []) if e.get("entity") == mapping.get("entity")
            and e.get("role") == mapping.get("role") and e.get("group") == mapping.get("group")]


def _is_task(actions: list[str]) -> bool:
    """A custom action or a form: it does something for the customer, more than a response."""
    return any(not a.startswith("utter_") for a in actions)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _button_payload(text: str) -> bool:
    return text.strip().startswith("/")


# what the policies' tracker reads of the stored events, besides messages and actions
TRACKER_EVENTS = frozenset({"slot", "active_loop", "action_execution_rejected", "restart", "rewind", "undo",
                            "reset_slots", "session_started"})  # and CLARIFIED_MESSAGE, read as a message
ACTION_LISTEN = "action_listen"
LISTEN_EVENT = {"event": "action", "name": ACTION_LISTEN}
DEFAULT_FALLBACK_ACTION = "action_default_fallback"
MAX_PREDICTED_ACTIONS = 10  # Rasa's max_number_of_predictions


def _policy_user_event(event: dict[str, Any]) -> dict[str, Any]:
    """A message as the policies see it: intent (a retrieval intent by its base name) and entities."""
    parse = event.get("parse_data") or {}
    intent = str((parse.get("intent") or {}).get("name") or "")
    return {"event": "user", "parse_data": {"intent": {"name": intent.split("/", 1)[0]},
                                            "entities": list(parse.get("entities") or [])}}


def _intent_rules(rules: list[dict[str, Any]]) -> dict[str, list[tuple[list[dict[str, Any]], list[str]]]]:
    """intent -> [(conditions, actions)] of the rules that start with it, those with more conditions first."""
    found: dict[str, list[tuple[list[dict[str, Any]], list[str]]]] = {}
    for rule in rules:
        steps = rule.get("steps", [])
        if steps and "intent" in steps[0]:
            conditions = [c for c in rule.get("condition") or [] if isinstance(c, dict)]
            actions = [s["action"] for s in steps[1:] if "action" in s]
            found.setdefault(steps[0]["intent"], []).append((conditions, actions))
    for candidates in found.values():
        candidates.sort(key=lambda rule: -len(rule[0]))  # stable: file order among equals
    return found


def _condition_holds(condition: dict[str, Any], state: DialogueState) -> bool:
    """Rasa rule conditions: `active_loop: name | null`, `slot_was_set: [{slot: value} | slot]`."""
    if "active_loop" in condition:
        return state.active_loop == condition["active_loop"]
    for item in condition.get("slot_was_set") or []:
        if isinstance(item, dict):
            if any(state.slots.get(slot) != value for slot, value in item.items()):
                return False
        elif state.slots.get(str(item)) is None:
            return False
    return True


def _form_submits(rules: list[dict[str, Any]]) -> dict[str, list[str]]:
    """form -> the actions a rule runs when the form completes (`active_loop: null` then `action: ...`)."""
    submits: dict[str, list[str]] = {}
    for rule in rules:
        loops = [c.get("active_loop") for c in rule.get("condition") or [] if isinstance(c, dict)]
        steps = rule.get("steps", [])
        closing = next((i for i, s in enumerate(steps) if "active_loop" in s and s["active_loop"] is None), None)
        if loops and loops[0] and closing is not None:
            submits[loops[0]] = [s["action"] for s in steps[closing + 1 :] if "action" in s]
    return submits
