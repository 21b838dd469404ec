"""Running custom actions (rasa_sdk), in-process or on a Rasa action server: same request, same result.

    runner = InProcessActionRunner("actions")                    # or RemoteActionRunner("http://host:5055/webhook")
    result = await runner.run("action_check_balance", tracker_payload(...), domain_payload(...))
    result.events, result.responses                              # Rasa event dicts, dispatcher messages

Both runners send Rasa's webhook request (`next_action`, `sender_id`, `tracker`, `domain`, `version`) and
raise `ActionRejected` when a form validation rejects, `ActionError` for anything else that went wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ValidationError


def _sdk_version() -> str:
    try:
        return version("rasa-sdk")
    except PackageNotFoundError:
        return "3.21.1"


# Rasa sends its own version; the SDK warns when major.minor differ from its own, so we send the SDK's.
PROTOCOL_VERSION = _sdk_version()


class ActionResult(BaseModel):
    events: list[dict[str, Any]]
    responses: list[dict[str, Any]]


class ActionError(Exception):
    """An action could not be run: unknown name, server unreachable, action crashed, bad reply."""

    def __init__(self, message: str, action_name: str | None = None) -> None:
        super().__init__(message)
        self.action_name = action_name


class ActionRejected(ActionError):
    """rasa_sdk's `ActionExecutionRejection`: the action (usually a form validation) refuses to run now."""


class ActionRunner(Protocol):
    async def run(self, action_name: str, tracker: dict[str, Any], domain: dict[str, Any]) -> ActionResult: ...


def action_request(action_name: str, tracker: dict[str, Any], domain: dict[str, Any]) -> dict[str, Any]:
    """The body Rasa POSTs to an action server's webhook."""
    return {"next_action": action_name, "sender_id": tracker["sender_id"], "tracker": tracker, "domain": domain,
            "version": PROTOCOL_VERSION}


def _result(action_name: str, body: Any) -> ActionResult:
    try:
        return ActionResult.model_validate(body)
    except ValidationError as exc:
        raise ActionError(f"action {action_name!r} gave a bad reply: {exc}", action_name) from exc


class InProcessActionRunner:
    """Runs actions of `package` through rasa_sdk's `ActionExecutor` in this process."""

    def __init__(self, package: str = "actions") -> None:
        from rasa_sdk.executor import ActionExecutor  # imported here: rasa_sdk pulls in sanic

        self.package = package
        self.executor = ActionExecutor()
        try:
            self.executor.register_package(package)
        except SystemExit as exc:  # rasa_sdk exits the process when the package fails to import
            raise ActionError(f"cannot import the actions package {package!r}") from exc
        self._keep_own_actions()

    def _keep_own_actions(self) -> None:
        """rasa_sdk registers every Action subclass imported in the process, so two projects' packages in one
        process (tests, or the bundled bot beside a Rasa project) would lend each other same-named actions:
        keep only the classes of this package."""
        import inspect

        from rasa_sdk import Action, utils

        own = [cls for cls in utils.all_subclasses(Action) if not inspect.isabstract(cls)
               and (cls.__module__ == self.package or cls.__module__.startswith(f"{self.package}."))]
        self.executor.actions = {}
        for cls in own:
            self.executor.register_action(cls)

    async def run(self, action_name: str, tracker: dict[str, Any], domain: dict[str, Any]) -> ActionResult:
        from rasa_sdk.interfaces import ActionExecutionRejection, ActionMissingDomainException, ActionNotFoundException

        if action_name not in self.executor.actions:
            raise ActionError(f"unknown action {action_name!r} in package {self.package!r}", action_name)
        # A JSON round trip, as over HTTP: the executor appends to the tracker's events, and the action
        # must see (and give back) only JSON, exactly as it would on an action server.
        request = json.loads(json.dumps(action_request(action_name, tracker, domain)))
        try:
            result = await self.executor.run(request)
            body = json.loads(json.dumps(result.model_dump() if result else None))
        except ActionExecutionRejection as exc:
            raise ActionRejected(exc.message, exc.action_name) from exc
        except (ActionNotFoundException, ActionMissingDomainException) as exc:
            raise ActionError(exc.message, action_name) from exc
        except Exception as exc:
            raise ActionError(f"action {action_name!r} failed: {exc!r}", action_name) from exc
        return _result(action_name, body)


class RemoteActionRunner:
    """POSTs to a Rasa action server's webhook, e.g. `http://localhost:5055/webhook` (`action_endpoint.url`)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    async def run(self, action_name: str, tracker: dict[str, Any], domain: dict[str, Any]) -> ActionResult:
        request = action_request(action_name, tracker, domain)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                reply = await client.post(self.url, json=request)
        except httpx.TimeoutException as exc:
            raise ActionError(f"action server {self.url} timed out after {self.timeout}s running {action_name!r}",
                              action_name) from exc
        except httpx.HTTPError as exc:
            raise ActionError(f"cannot reach action server {self.url}: {exc!r}", action_name) from exc
        return self._parse(action_name, reply)

    def _parse(self, action_name: str, reply: httpx.Response) -> ActionResult:
        try:
            body = reply.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if reply.status_code == 400 and isinstance(body, dict) and "action_name" in body:
            raise ActionRejected(str(error), body["action_name"])
        if reply.status_code == 404:
            raise ActionError(f"unknown action {action_name!r} on {self.url}: {error}", action_name)
        if reply.status_code != 200:
            detail = error or reply.text[:200]
            raise ActionError(f"action server {self.url} answered {reply.status_code} to {action_name!r}: {detail}",
                              action_name)
        return _result(action_name, body)


def _latest_user_event(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((e for e in reversed(list(events)) if e.get("event") == "user"), None)


def tracker_payload(
    sender_id: str,
    slots: Mapping[str, Any],
    latest_message: Mapping[str, Any],
    events: list[dict[str, Any]],
    active_loop: str | Mapping[str, Any] | None = None,
    latest_action_name: str | None = None,
    followup_action: str | None = None,
    paused: bool = False,
) -> dict[str, Any]:
    """Rasa's tracker JSON (`DialogueStateTracker.current_state`). `latest_message` is parse data:
    `text`, `intent`, `entities`, `metadata`; `active_loop` a form name or Rasa's active-loop dict."""
    if isinstance(active_loop, str):
        active_loop = {"name": active_loop, "validate": True, "rejected": False, "trigger_message": {}}
    times = [e["timestamp"] for e in events if e.get("timestamp") is not None]
    latest_user = _latest_user_event(events)
    message = {"intent": {}, "entities": [], "text": None, "metadata": {}, **latest_message}
    return {
        "sender_id": sender_id,
        "slots": dict(slots),
        "latest_message": message,
        "latest_event_time": max(times) if times else None,
        "followup_action": followup_action,
        "paused": paused,
        "events": list(events),
        "latest_input_channel": latest_user.get("input_channel") if latest_user else None,
        "active_loop": dict(active_loop or {}),
        "latest_action": {"action_name": latest_action_name} if latest_action_name else {},
        "latest_action_name": latest_action_name,
    }


def domain_payload(
    intents: Iterable[str] = (),
    entities: Iterable[str] = (),
    slots: Mapping[str, Mapping[str, Any]] | Iterable[str] = (),
    responses: Mapping[str, list[dict[str, Any]]] | None = None,
    actions: Iterable[str] = (),
    forms: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """A minimal Rasa domain. `slots` maps names to Rasa slot definitions, or lists names (type `any`,
    custom mapping); `forms` maps form names to their required slots."""
    if not isinstance(slots, Mapping):
        slots = {name: {"type": "any", "influence_conversation": False, "mappings": [{"type": "custom"}]}
                 for name in slots}
    return {
        "version": "3.1",
        "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
        "intents": list(intents),
        "entities": list(entities),
        "slots": {name: dict(definition) for name, definition in slots.items()},
        "responses": dict(responses or {}),
        "actions": list(actions),
        "forms": {name: {"required_slots": list(required)} for name, required in (forms or {}).items()},
    }
