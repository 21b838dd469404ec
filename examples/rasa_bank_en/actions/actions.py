"""Harbour Bank's custom actions, written with rasa_sdk exactly as for a Rasa action server."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

DEMO_BALANCES = {"checking": 1520.75, "savings": 8300.00, "credit": 412.10}
LAST4 = re.compile(r"\b(\d{4})\b")


class ActionCheckBalance(Action):
    def name(self) -> str:
        return "action_check_balance"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        account = tracker.get_slot("account_type") or "checking"
        balance = DEMO_BALANCES.get(account, 0.0)
        dispatcher.utter_message(text=f"Your {account} balance is {balance:,.2f} pounds.")
        return [SlotSet("balance", balance)]


class ActionFreezeCard(Action):
    def name(self) -> str:
        return "action_freeze_card"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        last4 = tracker.get_slot("card_last4")
        frozen = [*(tracker.get_slot("frozen_cards") or []), last4]
        return [SlotSet("card_frozen", True), SlotSet("frozen_cards", frozen)]


class ValidateLostCardForm(FormValidationAction):
    def name(self) -> str:
        return "validate_lost_card_form"

    def validate_card_last4(self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: DomainDict) -> dict[str, Any]:
        match = LAST4.search(str(slot_value or ""))
        if match is None:
            dispatcher.utter_message(text="That doesn't look like four digits. Please type the last four digits "
                                          "of the card number, e.g. 4821.")
            return {"card_last4": None}
        return {"card_last4": match.group(1)}
