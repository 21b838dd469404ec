"""What the policies need to know of a Rasa 3 domain: intents, entities, actions, forms and the slots that
shape the dialogue state, with Rasa's featurisation of each slot type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTION_LISTEN = "action_listen"
OTHER_CATEGORY = "__other__"  # Rasa's catch-all value of a categorical slot
SLOT_TYPES = ("text", "bool", "categorical", "float", "list", "any")


class DomainError(ValueError):
    """A domain description the policies cannot use; the message names the slot or form and the problem."""


@dataclass(frozen=True)
class SlotSpec:
    name: str
    type: str
    influence_conversation: bool = True
    values: tuple[str, ...] = ()  # categorical: lower-cased, ending with __other__
    min_value: float = 0.0
    max_value: float = 1.0

    @classmethod
    def from_rasa(cls, name: str, spec: dict[str, Any]) -> SlotSpec:
        kind = str(spec.get("type", ""))
        if kind not in SLOT_TYPES:
            raise DomainError(f"slot '{name}': type {kind!r} is not one of {', '.join(SLOT_TYPES)}")
        influence = bool(spec.get("influence_conversation", kind != "any"))
        if kind == "any" and influence:
            raise DomainError(f"slot '{name}': an 'any' slot cannot influence the conversation "
                              "(set influence_conversation: false or choose another type)")
        values: tuple[str, ...] = ()
        if kind == "categorical":
            raw = spec.get("values")
            if not isinstance(raw, list) or not raw:
                raise DomainError(f"slot '{name}': a categorical slot needs a non-empty list 'values'")
            values = tuple(dict.fromkeys([str(v).lower() for v in raw] + [OTHER_CATEGORY]))
        return cls(name, kind, influence, values, float(spec.get("min_value", 0.0)),
                   float(spec.get("max_value", 1.0)))

    def features(self, value: Any) -> tuple[float, ...]:
        """Rasa's `Slot.as_feature()`: all zeros means "not set", and such a slot is left out of the state."""
        if self.type == "text":
            return (float(value is not None),)
        if self.type == "list":
            return (float(bool(value)),)
        if self.type == "bool":
            return (0.0, 0.0) if value is None else (1.0, float(_as_bool(value)))
        if self.type == "float":
            return self._float_features(value)
        if self.type == "categorical":
            return self._categorical_features(value)
        return ()

    def _float_features(self, value: Any) -> tuple[float, ...]:
        try:
            capped = max(self.min_value, min(self.max_value, float(value)))
        except (TypeError, ValueError):
            return (0.0, 0.0)
        covered = abs(self.max_value - self.min_value) or 1.0
        return (1.0, (capped - self.min_value) / covered)

    def _categorical_features(self, value: Any) -> tuple[float, ...]:
        if value is None:
            return tuple(0.0 for _ in self.values)
        chosen = str(value).lower() if str(value).lower() in self.values else OTHER_CATEGORY
        return tuple(float(v == chosen) for v in self.values)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"false", "0", "no", "off", ""}
    return bool(value)


@dataclass
class PolicyDomain:
    intents: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)  # empty: every entity a message carries counts
    actions: list[str] = field(default_factory=list)
    slots: dict[str, SlotSpec] = field(default_factory=dict)
    forms: list[str] = field(default_factory=list)

    @classmethod
    def from_rasa(cls, domain: dict[str, Any]) -> PolicyDomain:
        """From a Rasa 3 domain as plain data: `slots` maps names to `{type, values, influence_conversation,
        min_value, max_value}`; `forms` is a mapping (form -> spec or required slots) or a list of names."""
        slots = {str(name): SlotSpec.from_rasa(str(name), spec or {})
                 for name, spec in (domain.get("slots") or {}).items()}
        forms = [str(f) for f in (domain.get("forms") or [])]
        if forms and "requested_slot" not in slots:
            slots["requested_slot"] = SlotSpec("requested_slot", "text", influence_conversation=False)
        return cls(intents=[str(i) for i in domain.get("intents") or []],
                   entities=[str(e) for e in domain.get("entities") or []],
                   actions=[str(a) for a in domain.get("actions") or []], slots=slots, forms=forms)

    def to_rasa(self) -> dict[str, Any]:
        slots = {s.name: {"type": s.type, "influence_conversation": s.influence_conversation,
                          "min_value": s.min_value, "max_value": s.max_value,
                          **({"values": [v for v in s.values if v != OTHER_CATEGORY]} if s.values else {})}
                 for s in self.slots.values()}
        return {"intents": self.intents, "entities": self.entities, "actions": self.actions, "slots": slots,
                "forms": self.forms}

    def slot_features(self, name: str, value: Any) -> tuple[float, ...] | None:
        """The slot's features in a dialogue state, or None when it is left out (unknown, not influencing the
        conversation, or not set)."""
        spec = self.slots.get(name)
        if spec is None or not spec.influence_conversation:
            return None
        features = spec.features(value)
        return features if any(features) else None
