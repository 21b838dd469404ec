"""`bot shell`: talk to the bot in a terminal and see each step of the NLU."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from bot.assistant import Assistant
from bot.dialogue.engine import DialogueState
from bot.dialogue.service import chosen_option

EXIT_WORDS = {"/exit", "/quit", "exit", "quit"}


def run_shell(assistant: Assistant, channel: str = "web", console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    chinese = assistant.config.language.startswith("zh")
    you = "您> " if chinese else "you> "
    console.print(f"[bold]{assistant.config.product_name}[/bold] model {assistant.version} · channel {channel} · "
                  f"{'输入 /exit 退出' if chinese else 'type /exit to quit'}")
    interactive = sys.stdin.isatty()
    state = DialogueState()
    history: list[dict] = []
    options: list[dict[str, str]] = []  # the last reply's buttons: typing a number presses one
    while True:
        try:
            text = input(you) if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            break
        if not interactive and text == "":
            break
        text = text.rstrip("\n")
        if text.strip() in EXIT_WORDS:
            break
        if not text.strip():
            continue
        if not interactive:
            console.print(f"{you}{text}")
        state = show_turn(assistant, text, channel, console, state, history, options)


def show_turn(assistant: Assistant, text: str, channel: str, console: Console, state: DialogueState,
              history: list[dict], options: list[dict[str, str]] | None = None) -> DialogueState:
    """Answer one message in the conversation so far, print what the bot understood, return the new state.
    A number picks one of `options` (the buttons last shown), as on WeChat; `options` is updated."""
    options = [] if options is None else options
    payload = chosen_option(text, options)
    if payload is not None:
        console.print(f"  [dim]button[/dim]     {payload}")
        text = payload
    parse, outcome = assistant.respond(text, channel, state, sender_id="shell", history=history)
    history += [{"event": "user", "text": text, "parse_data": dict(parse)}, *outcome.events]
    replies = outcome.replies
    console.print(f"  [dim]normalised[/dim] {parse['normalized_text']}")
    console.print(f"  [dim]tokens[/dim]     {' / '.join(parse['tokens'])}")
    ranking = "  ".join(f"{i['name']} {i['confidence']:.2f}" for i in parse["intent_ranking"][:4])
    console.print(f"  [dim]intents[/dim]    {ranking}")
    for entity in parse["entities"]:
        console.print(f"  [dim]entity[/dim]     {entity['entity']}={entity['value']!r} "
                      f"[{entity['start']}:{entity['end']}] ({entity['extractor']})")
    retrieval = parse.get("retrieval")
    if retrieval:
        table = Table(show_header=False, box=None, padding=(0, 1))
        for hit in retrieval["alternatives"]:
            table.add_row("  ", f"{hit['confidence']:.2f}", hit["id"], hit["question"])
        console.print(f"  [dim]knowledge[/dim]  decision: {retrieval['decision']}")
        console.print(table)
    filled = {k: v for k, v in outcome.state.slots.items() if v is not None}
    if filled or outcome.state.active_loop:
        console.print(f"  [dim]state[/dim]      form={outcome.state.active_loop} slots={filled}")
    for reply in replies:
        console.print(f"[bold green]{assistant.config.assistant_name}>[/bold green] {reply.text}")
        for number, button in enumerate(reply.buttons, 1):
            console.print(f"       [{number}] {button.title}")
    last_buttons = next((r.buttons for r in reversed(replies) if r.buttons), [])
    options[:] = [{"title": b.title, "payload": b.payload} for b in last_buttons]
    return outcome.state
