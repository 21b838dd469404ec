"""What the load benchmark's customers say (bench/load.py): conversations of the bundled bank bot, each a list of
steps with what a right reply contains. Written for the benchmark from the bundled bot's knowledge base, forms and
hand-over words; the card-loss answers are those of the demo bank (actions/core_banking.py: card 6688 of C0001)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    text: str
    expect: tuple[str, ...] = ()  # a right reply contains one of these; empty: any non-empty reply


@dataclass(frozen=True)
class Conversation:
    kind: str  # faq | card_loss | handover | slow_action
    steps: tuple[Step, ...]


# everyday questions the knowledge base and intents answer, in customers' words (some traditional, some casual)
FAQ_QUESTIONS = (  # each answered directly (a question answered by a "您是不是想问" menu counts towards a hand-over)
    "网点几点开门",
    "补办银行卡要带什么",
    "我的卡被ATM吞了怎么办",
    "手机银行转账限额是多少",
    "怎么开通手机银行",
    "信用卡账单日怎么查",
    "忘记密码了怎么办",
    "掛失後怎麼補卡",
    "转账转错了能退回来吗",
)
# answered from the knowledge base alone: the slow-backend run's other customers, who must not wait on actions
FAQ_WITHOUT_ACTIONS = tuple(q for q in FAQ_QUESTIONS if q not in ("手机银行转账限额是多少", "信用卡账单日怎么查"))
CLOSINGS = ("谢谢", "好的，谢谢")

CARD_LOSS = Conversation("card_loss", (
    Step("我的银行卡丢了，帮我挂失", ("后4位", "后四位")),
    Step("尾号6688", ("身份证",)),
    Step("3456", ("确认",)),
    Step("确认", ("挂失编号",)),
))

# the agent's side of a hand-over is played by bench/load.py's simulated agents
HANDOVER_REQUEST = Step("转人工", ("人工", "排队", "等待", "您是"))
RATING = Step("5", ("感谢",))
AGENT_REPLY = "您好，我是人工客服，已经看到您的问题，马上为您处理。"

# need the action server / bank back end: the slow-backend fault run asks these
SLOW_ACTION = (
    Conversation("slow_action", (Step("查一下余额"),)),
    Conversation("slow_action", (Step("我的银行卡丢了，帮我挂失"), Step("尾号6688"), Step("3456"), Step("确认"))),
)


def faq(rng: random.Random, questions: tuple[str, ...] = FAQ_QUESTIONS) -> Conversation:
    questions = tuple(rng.sample(questions, 3))
    steps = [Step(q) for q in questions]
    if rng.random() < 0.5:
        steps.append(Step(rng.choice(CLOSINGS)))
    return Conversation("faq", tuple(steps))


def handover(rng: random.Random) -> Conversation:
    """A question, then a person asked for; the rest (the agent's reply, the rating) is played by the client."""
    return Conversation("handover", (Step(rng.choice(FAQ_QUESTIONS)), HANDOVER_REQUEST))


def next_conversation(rng: random.Random, websocket: bool) -> Conversation:
    """Mostly FAQ, a card-loss form in about a quarter; a widget customer asks for a person one time in eight."""
    roll = rng.random()
    if websocket and roll < 0.125:
        return handover(rng)
    if roll < 0.375 if websocket else roll < 0.25:
        return CARD_LOSS
    return faq(rng)
