"""The dialogue engine: what the bot does with one understood message, given the conversation's state.

In Rasa's terms: slots are filled from the message by their domain mappings; an active form (`active_loop`)
asks for each required slot, validates through its `validate_<form>` action, re-asks with the reason, can be
cancelled (取消/算了) and survives an interruption (an FAQ question is answered, then the form asks again);
rules map intents to responses, custom actions (rasa_sdk, through an `ActionRunner`) and forms; knowledge
questions get the knowledge base's answer; an ambiguous message gets "您是不是想问…" with the top 3; a message
not understood twice in a row gets the offer of a human. A short follow-up such as "那信用卡呢" is read in the
frame of the previous message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from bot.config import DialogueConfig
from bot.dialogue.actions import ActionError, ActionRunner, domain_payload, tracker_payload
from bot.dialogue.responder import CONVERSATIONAL_INTENTS, Button, Reply, Responder
from bot.handoff.triggers import REQUEST_INTENT as REQUEST_HUMAN
from bot.nlu.classifier import FALLBACK_INTENT, OOS_INTENTS
from bot.training_data import TrainingData

HANDOFF_ACTION = "action_handoff"  # built in: rules end with it to hand the conversation to a person
MAX_ACTION_CHAIN = 5  # followup actions one turn may trigger
FOLLOW_UP = re.compile(r"^(那|那么|那要是|如果是|换成)?(?P<rest>.{1,12}?)(呢|怎么办|怎么样|行吗|可以吗)?[?？。!！]*$")
Reparse = Callable[[str], dict[str, Any]]
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
                 runner: ActionRunner | None = None, reparse: Reparse | None = None) -> None:
        self.data = data
        self.config = config
        self.responder = responder
        self.runner = runner
        self.reparse = reparse
        self.rules = _intent_rules(data.rules)
        # how a clarification menu names an intent: its first training example, in a customer's words
        self.titles = {e.intent: e.text for e in reversed(data.examples)
                       if e.intent not in CONVERSATIONAL_INTENTS and e.intent not in OOS_INTENTS}
        self.form_submits = _form_submits(data.rules)
        self.domain = domain_payload(intents=data.intents, entities=sorted({*data.lookups, *data.regexes}),
                                     slots=data.slots, responses=data.responses, actions=data.actions,
                                     forms=data.forms)

    def turn(self, state: DialogueState, parse: dict[str, Any], channel: str, sender_id: str,
             history: list[dict[str, Any]] | None = None) -> TurnOutcome:
        """Blocking wrapper of `next_turn`, for callers outside an event loop (the service runs in threads)."""
        return asyncio.run(self.next_turn(state, parse, channel, sender_id, history or []))

    async def next_turn(self, state: DialogueState, parse: dict[str, Any], channel: str, sender_id: str,
                        history: list[dict[str, Any]]) -> TurnOutcome:
        turn = _Turn(sender_id, channel, parse, history, state.model_copy(deep=True))
        turn.parse = self._accepts_offer(turn) or self._without_courtesy(turn) or self._follow_up(turn)
        turn.parse = self._in_context(turn) or turn.parse
        turn.state.human_offered = False
        turn.state.handed_over_task = None
        payload = _button_payload(parse.get("text", ""))
        if turn.state.active_loop and self._cancels(turn):
            await self._cancel_form(turn)
        elif turn.state.active_loop:
            await self._continue_form(turn, payload)
        elif parts := self._questions(turn):
            await self._respond_each(turn, parts)
        else:
            self._fill_slots(turn, requested=None)
            await self._respond(turn)
        turn.state.latest_intent = turn.parse["intent"]["name"]
        # what the customer meant, in full: a follow-up's rewritten question, so that the next follow-up builds on it
        turn.state.latest_text = turn.parse.get("follow_up_of") or turn.parse.get("text")
        turn.state.latest_entities = list(turn.parse.get("entities", []))
        return TurnOutcome(turn.state, turn.parse, turn.events, turn.replies)

    # --- outside a form ------------------------------------------------------------------------------------

    async def _respond(self, turn: _Turn) -> None:
        if self._out_of_scope(turn):
            turn.state.fallbacks = 0
            turn.replies += self._utter(turn, self.config.out_of_scope_response)
            return
        intent = turn.parse["intent"]
        retrieval = turn.parse.get("retrieval") or {"decision": "none", "top": None, "alternatives": []}
        actions = self._rule_actions(intent["name"], turn.state)
        if self._product_unclear(turn):
            turn.replies += self._which_product(turn)
            return
        confident = intent["confidence"] >= self._threshold(intent["name"])
        # a task (custom action or form) does something for the customer: it beats a similar FAQ answer
        is_task = bool(actions) and any(not a.startswith("utter_") for a in actions)
        if actions and confident and (is_task or not self.responder.knowledge_wins(intent, retrieval)):
            turn.state.fallbacks = 0
            for name in actions:
                await self._run(turn, name)
            return
        if retrieval["decision"] == "answer":
            turn.state.fallbacks = 0
            top = retrieval["top"]
            turn.replies.append(Reply(text=top["answer"], source=top["id"]))
            return
        self._not_sure(turn, retrieval)

    def _product_unclear(self, turn: _Turn) -> bool:
        """"额度什么时候能提高": a limit, a due date, an approval or a rate differ between a credit card and a
        loan, and the message names neither."""
        text = turn.parse.get("text", "")
        intent = turn.parse["intent"]["name"]
        return len(text) <= 16 and intent.startswith(PRODUCT_INTENTS) and PRODUCT_TOPIC.search(text) is not None \
            and PRODUCT_NAMED.search(text) is None and PROBLEM_REPORT.search(text) is None

    def _which_product(self, turn: _Turn) -> list[Reply]:
        text = turn.parse.get("text", "").rstrip("？?。.!！ ")
        buttons = [Button(title=product, payload=f"{product}{text}") for product in ("信用卡", "贷款")]
        return [Reply(text="请问您问的是信用卡还是贷款？", buttons=buttons, source="clarify_product")]

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
        if turn.state.fallbacks >= 2:
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
        for ranked in turn.parse.get("intent_ranking", []):
            title = self.titles.get(ranked["name"])
            if title and ranked["confidence"] >= self.config.menu_min_confidence and \
                    self._rule_actions(ranked["name"], turn.state):
                scored.append((ranked["confidence"], Button(title=title, payload=f"/{ranked['name']}")))
        for entry in retrieval.get("alternatives") or []:
            if entry["confidence"] >= self.config.menu_min_confidence:
                scored.append((entry["confidence"], Button(title=entry["question"], payload=entry["question"])))
        options: list[tuple[float, Button]] = []
        for score, button in sorted(scored, key=lambda item: -item[0]):
            if button.title not in {o.title for _, o in options}:
                options.append((score, button))
        return options[: self.config.menu_size]

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
            turn.replies.append(Reply(text=f"您还提到“{later['text']}”，办完这一项后再告诉我，我接着为您办理。",
                                      source="several_questions"))
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

    def _offer_human(self, turn: _Turn, response: str = "utter_offer_human") -> list[Reply]:
        turn.state.human_offered = True
        channel = turn.channel
        offer = self.responder.utter(response, channel, {}) or self.responder.utter("utter_offer_human", channel, {})
        if offer:
            return offer
        text = "抱歉，我还没能理解您的问题。需要为您转接人工客服吗？"
        if channel == "wechat":
            return [Reply(text=f"{text}回复“转人工”即可。", source="offer_human")]
        return [Reply(text=text, buttons=[Button(title="转人工", payload="/request_human")], source="offer_human")]

    # --- actions --------------------------------------------------------------------------------------------

    async def _run(self, turn: _Turn, name: str, depth: int = 0) -> None:
        """Run one action by name: a response, a form, or a custom action."""
        if name.startswith("utter_"):
            turn.action(name)
            turn.replies += self._utter(turn, name)
        elif name == HANDOFF_ACTION:  # a rule hands over: the conversation service queues it for a person
            turn.action(name)
            turn.set_slot("handoff_requested", turn.parse["intent"]["name"])
        elif name in self.data.forms:
            await self._start_form(turn, name)
        elif depth < MAX_ACTION_CHAIN:
            await self._custom_action(turn, name, depth)

    async def _custom_action(self, turn: _Turn, name: str, depth: int) -> None:
        turn.action(name)
        if self.runner is None:
            turn.replies += self._utter(turn, self.config.fallback_response)
            return
        try:
            result = await self.runner.run(name, self._tracker(turn), self.domain)
        except ActionError as e:
            turn.events.append({"event": "action_execution_failed", "name": name, "reason": str(e)[:300]})
            turn.replies.append(Reply(text="抱歉，系统暂时无法办理，请稍后再试或转人工客服。", source=name))
            return
        followup = self._apply(turn, result.events)
        turn.replies += self._responses(turn, result.responses)
        if followup:
            await self._run(turn, followup, depth + 1)

    def _apply(self, turn: _Turn, events: list[dict[str, Any]]) -> str | None:
        """Apply an action's events to the state; returns a follow-up action to run, if any."""
        followup = None
        for event in events:
            kind = event.get("event")
            if kind == "slot":
                turn.set_slot(event["name"], event.get("value"))
            elif kind == "active_loop":
                turn.set_loop(event.get("name"))
            elif kind == "followup":
                followup = event.get("name")
            elif kind == "pause":
                turn.state.paused = True
                turn.events.append(event)
            elif kind == "reset_slots":
                turn.state.slots = {}
                turn.events.append(event)
            elif kind == "bot":
                turn.replies.append(Reply(text=str(event.get("text") or ""), source="action"))
            else:
                turn.events.append(event)
        return followup

    def _responses(self, turn: _Turn, responses: list[dict[str, Any]]) -> list[Reply]:
        replies = []
        for message in responses:
            name = message.get("response") or message.get("template")
            if name:
                replies += self._utter(turn, name)
            elif message.get("text"):
                buttons = [Button(title=str(b["title"]), payload=str(b["payload"]))
                           for b in message.get("buttons") or []]
                replies.append(Reply(text=str(message["text"]), buttons=buttons, source="action"))
        return replies

    def _tracker(self, turn: _Turn, tail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        user = {"event": "user", "text": turn.parse.get("text"), "parse_data": turn.parse,
                "input_channel": turn.channel, "metadata": turn.parse.get("metadata") or {}}
        latest = {**turn.parse, "metadata": turn.parse.get("metadata") or {}}
        return tracker_payload(turn.sender_id, turn.state.slots, latest,
                               [*turn.history, user, *turn.events, *(tail or [])], active_loop=turn.state.active_loop)

    def _utter(self, turn: _Turn, name: str) -> list[Reply]:
        entities = {e["entity"]: e["value"] for e in turn.parse.get("entities", [])}
        slots = {**entities, **{k: v for k, v in turn.state.slots.items() if v is not None}}  # slots win
        return self.responder.utter(name, turn.channel, slots)

    # --- forms ----------------------------------------------------------------------------------------------

    async def _start_form(self, turn: _Turn, form: str) -> None:
        turn.action(form)
        turn.set_loop(form)
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
            if turn.state.active_loop == form:
                turn.replies += [Reply(text="我们继续刚才的业务。", source=form), *self._ask(turn, requested)]
            return
        turn.state.fallbacks = 0
        await self._validate_and_ask(turn, form)

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
            try:
                result = await self.runner.run(validator, tracker, self.domain)
            except ActionError as e:
                turn.events.append({"event": "action_execution_failed", "name": validator, "reason": str(e)[:300]})
                result = None
            if result is not None:
                for event in result.events:
                    if event.get("event") == "slot" and event.get("name") == "requested_slot":
                        explicit_next = (True, event.get("value"))
                self._apply(turn, [e for e in result.events if e.get("name") != "requested_slot"])
                turn.replies += self._responses(turn, result.responses)
        missing = [s for s in self.data.forms[form] if turn.state.slots.get(s) is None]
        next_slot = explicit_next[1] if explicit_next[0] else (missing[0] if missing else None)
        if next_slot is None:
            await self._complete_form(turn, form)
            return
        turn.set_slot("requested_slot", next_slot)
        turn.replies += self._ask(turn, next_slot)

    def _ask(self, turn: _Turn, slot: str | None) -> list[Reply]:
        if slot is None:
            return []
        asked = self._utter(turn, f"utter_ask_{slot}")
        return asked or [Reply(text=f"请提供{slot}。", source=f"utter_ask_{slot}")]

    async def _complete_form(self, turn: _Turn, form: str) -> None:
        turn.set_slot("requested_slot", None)
        turn.set_loop(None)
        turn.state.loop_slots = []  # done: what it collected stays for its submit action to use (or clear)
        for name in self.form_submits.get(form, []):
            await self._run(turn, name)
        pending = turn.state.slots.get("pending_action")
        if pending:  # an action that started this form to collect what it needs (e.g. identity) resumes
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
        turn.replies += self._utter(turn, "utter_form_cancelled") or [
            Reply(text="好的，已为您取消本次办理。还有其他可以帮您的吗？", source="utter_form_cancelled")]

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
        for slot, spec in self.data.slots.items():
            if slot in form_slots and slot != requested[1] and turn.state.slots.get(slot) is not None:  # type: ignore[index]
                continue  # an answer the form already collected is not overwritten by a stray entity
            found = _mapped_value(spec.get("mappings") or [], turn.parse, turn.state.active_loop,
                                  requested[1] if requested else None, slot)
            if found is None:
                continue
            kind, value = found
            filled[slot] = kind
            if turn.state.slots.get(slot) != value:
                turn.set_slot(slot, value)
        return filled

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


def _mapped_value(mappings: list[dict[str, Any]], parse: dict[str, Any], active_loop: str | None,
                  requested: str | None, slot: str) -> tuple[str, Any] | None:
    """(mapping type, value) of the first of a slot's mappings that applies to this message."""
    intent = parse["intent"]["name"]
    for mapping in mappings:
        conditions = mapping.get("conditions") or []
        if conditions and not any(c.get("active_loop") == active_loop and
                                  c.get("requested_slot", requested) == requested for c in conditions):
            continue
        if intent in (mapping.get("not_intent") or []) or (mapping.get("intent") and intent not in
                                                            _as_list(mapping["intent"])):
            continue
        kind = mapping.get("type")
        if kind == "from_entity":
            values = [e["value"] for e in parse.get("entities", []) if e["entity"] == mapping["entity"]]
            if values:
                return kind, values[0]
        elif kind == "from_text" and requested == slot:
            return kind, parse.get("text")
        elif kind == "from_intent" and mapping.get("intent"):
            return kind, mapping.get("value")
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _button_payload(text: str) -> bool:
    return text.strip().startswith("/")


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
