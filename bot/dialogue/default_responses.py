"""Built-in responses for what the engine says on its own, in the project's language.

A project's own responses always win: `with_defaults` only adds the names it does not define. Chinese texts
are the bundled bank bot's wording (so a Chinese project sounds like it); English is neutral. Other languages
get English until they have texts of their own.

What the engine (bot/dialogue/engine.py, responder.py) says on its own, by name; `Responder.say` takes the
project's response, else the one here (the bundled bot's data lacks several: it gets the Chinese ones):

| when                                                   | response                      |
|--------------------------------------------------------|-------------------------------|
| not understood twice, or a problem a person must see   | utter_offer_human(_problem, _unmatched) |
| a custom action failed                                 | utter_action_failed            |
| a form resumes after a side question                   | utter_continue_form            |
| a form slot without any utter_ask_… or action_ask_…    | utter_ask_slot                 |
| a form cancelled by a cancel word                      | utter_form_cancelled           |
| a second task in one message, left for later           | utter_mention_later_question   |
| credit card or loan? (only a project with both intents)| utter_clarify_product          |
| the clarification menu's intro and its way out         | utter_clarify, utter_none_of_these |

`{slot}` (the slot's name) and `{text}` (the later question) are filled by the engine, before slots.
"""

from __future__ import annotations

from typing import Any

Variants = list[dict[str, Any]]

_HUMAN_ZH = [{"title": "转人工客服", "payload": "/request_human"}]
_HUMAN_EN = [{"title": "Talk to a person", "payload": "/request_human"}]

DEFAULT_RESPONSES: dict[str, dict[str, Variants]] = {
    "zh": {
        "utter_default": [{"text": "抱歉，我没太理解您的意思。您可以换个说法，或直接说出要办理的业务。"}],
        "utter_ask_rephrase": [{"text": "不好意思，能麻烦您换一种说法再描述一下吗？"}],
        "utter_clarify": [{"text": "您是不是想问："}],
        "utter_none_of_these": [{"text": "都不是，转人工"}],
        "utter_offer_human": [
            {"text": "抱歉，我还没能理解您的问题。需要为您转接人工客服吗？", "buttons": _HUMAN_ZH},
            {"text": "抱歉，我还没能理解您的问题。需要为您转接人工客服吗？回复“转人工”即可。", "channel": "wechat"},
        ],
        "utter_offer_human_problem": [
            {"text": "这个情况需要结合您的账户具体查看，我没法直接处理。需要为您转接人工客服吗？",
             "buttons": _HUMAN_ZH},
        ],
        "utter_offer_human_unmatched": [
            {"text": "这个问题我暂时答不好，需要为您转接人工客服吗？客服会看到您刚才的描述。", "buttons": _HUMAN_ZH},
        ],
        "utter_form_cancelled": [{"text": "好的，已为您取消本次办理。还有其他可以帮您的吗？"}],
        "utter_out_of_scope": [{"text": "抱歉，这不在我的服务范围内。如需人工服务，请回复“转人工”。"}],
        "utter_action_failed": [
            {"text": "抱歉，系统暂时无法办理，请稍后再试。需要为您转接人工客服吗？", "buttons": _HUMAN_ZH},
            {"text": "抱歉，系统暂时无法办理，请稍后再试。需要人工服务请回复“转人工”。", "channel": "wechat"},
        ],
        "utter_continue_form": [{"text": "我们继续刚才的业务。"}],
        "utter_ask_slot": [{"text": "请提供{slot}。"}],
        "utter_mention_later_question": [{"text": "您还提到“{text}”，办完这一项后再告诉我，我接着为您办理。"}],
        "utter_clarify_product": [{"text": "请问您问的是信用卡还是贷款？"}],
    },
    "en": {
        "utter_default": [{"text": "Sorry, I didn't quite understand. Could you say it another way?"}],
        "utter_ask_rephrase": [{"text": "Sorry, could you rephrase that, with a little more detail?"}],
        "utter_clarify": [{"text": "Did you mean:"}],
        "utter_none_of_these": [{"text": "None of these, talk to a person"}],
        "utter_offer_human": [
            {"text": "Sorry, I still don't understand. Shall I put you through to a person?", "buttons": _HUMAN_EN},
        ],
        "utter_offer_human_problem": [
            {"text": "This needs someone to look at your account. Shall I put you through to a person?",
             "buttons": _HUMAN_EN},
        ],
        "utter_offer_human_unmatched": [
            {"text": "I can't answer that well. Shall I put you through to a person? They will see what you wrote.",
             "buttons": _HUMAN_EN},
        ],
        "utter_form_cancelled": [{"text": "OK, I've cancelled that. Is there anything else I can help with?"}],
        "utter_out_of_scope": [{"text": "Sorry, that's not something I can help with."}],
        "utter_action_failed": [{"text": "Sorry, I can't do that right now. Please try again later or ask "
                                         "for a person.", "buttons": _HUMAN_EN}],
        "utter_continue_form": [{"text": "Let's carry on where we were."}],
        "utter_ask_slot": [{"text": "Please give me your {slot}."}],
        "utter_mention_later_question": [{"text": "You also asked about \"{text}\": tell me again once we're "
                                                  "done with this."}],
        "utter_clarify_product": [{"text": "Do you mean a credit card or a loan?"}],
    },
}


def default_responses(language: str) -> dict[str, Variants]:
    """The built-in responses for `language` ("zh", "zh-TW", "en", ...); English for languages without texts."""
    base = language.split("-")[0].split("_")[0].lower()
    chosen = DEFAULT_RESPONSES.get(base, DEFAULT_RESPONSES["en"])
    return {name: [dict(v) for v in variants] for name, variants in chosen.items()}


def with_defaults(responses: dict[str, Variants], language: str) -> dict[str, Variants]:
    """`responses` plus the built-in ones it does not define; the project's own always win."""
    merged = default_responses(language)
    merged.update(responses)
    return merged
