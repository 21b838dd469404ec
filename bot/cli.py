"""The `bot` command. Heavy libraries are imported inside each command so `bot --help` starts fast."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="A Chinese-first customer-service bot; Rasa 3 projects load with --project DIR.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
eval_app = typer.Typer(help="Score the NLU on external data sets (the project's benchmark entry point).")
app.add_typer(eval_app, name="eval")
agents_app = typer.Typer(help="Agent accounts for the agent desk (/agent).")
app.add_typer(agents_app, name="agents")
data_app = typer.Typer(help="Checks of the training data and domain, as `rasa data validate` does them.")
app.add_typer(data_app, name="data")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to config.yml")]
ProjectOption = Annotated[Path | None, typer.Option(
    "--project", "-p", help="A Rasa 3 project directory (config.yml, domain.yml or domain/, data/, actions/)")]


def _config(path: Path, project: Path | None = None, report: bool = False) -> Any:
    """Our config.yml, or a Rasa project's translation (--project, or a config.yml that is Rasa's)."""
    from bot.config import ConfigError, load_config
    from bot.project import is_rasa_config_file

    if project is None and is_rasa_config_file(path):
        project = path.parent
    if project is not None:
        return _project(project, report).config
    try:
        return load_config(path)
    except ConfigError as e:
        _fail(str(e))


def _project(root: Path, report: bool) -> Any:
    from bot.project import ProjectError, load_project

    try:
        project = load_project(root)
    except ProjectError as e:
        _fail(str(e))
    if report:
        for note in project.notes:
            typer.secho(f"note: {note}", fg=typer.colors.BLUE, err=True)
        for channel, status in project.channels.items():
            typer.secho(f"note: credentials.yml {channel}: {status}", fg=typer.colors.BLUE, err=True)
    return project


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _train_with_progress(config: Any) -> Path:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from bot.model import train
    from bot.retrieval.knowledge import KnowledgeError
    from bot.training_data import TrainingDataError

    steps = 5
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  transient=False, console=_stderr_console()) as progress:
        task = progress.add_task("训练 training", total=steps)

        def advance(description: str) -> None:
            progress.update(task, description=description, advance=1)

        try:
            directory = train(config, advance)
        except (TrainingDataError, KnowledgeError) as e:
            _fail(str(e))
    return directory


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@app.command()
def train(config: ConfigOption = Path("config.yml"), project: ProjectOption = None) -> None:
    """Train the NLU and index the knowledge base into a new versioned directory under models/."""
    directory = _train_with_progress(_config(config, project, report=True))
    metadata = json.loads((directory / "metadata.json").read_text("utf-8"))
    typer.echo(f"model {directory} ({metadata['n_examples']} examples, {len(metadata['intents'])} intents, "
               f"{metadata['n_knowledge_entries']} knowledge entries, {metadata['train_seconds']} s)")


@app.command()
def run(config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
        host: Annotated[str | None, typer.Option(help="Bind address (default from config)")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default from config)")] = None,
        workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL + Redis for more than 1)")]
        = 1) -> None:
    """Serve the bot over HTTP; trains first when no model exists or the training data changed."""
    import uvicorn

    from bot.model import is_stale, latest_model_dir
    from bot.web.app import create_app

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus_client writes there from its first import
        Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    settings = _config(config, project)
    latest = latest_model_dir(settings)
    if latest is None:
        typer.echo("no trained model yet: training the bot first", err=True)
        _train_with_progress(settings)
    elif is_stale(latest, settings):
        typer.echo(f"the training data or the NLU config changed since {latest.name} was trained: "
                   "training a new model first", err=True)
        _train_with_progress(settings)
    server = settings.server
    # ws_max_size a little above max_frame_bytes: a frame just over it reaches our code, which closes with
    # 1009 and tells the customer why; uvicorn refuses anything far larger before buffering it all.
    # X-Forwarded-For/-Proto are believed from server.trusted_proxies only (none by default).
    options: dict[str, Any] = {"log_config": None} if server.log_format == "json" else {}  # the app logs JSON
    if workers > 1:  # each worker builds its app; their metrics meet in PROMETHEUS_MULTIPROC_DIR
        from bot.ops.serve import prepare_workers

        prepare_workers(config, project)
        target: Any = "bot.ops.serve:app_from_environment"
        options.update(factory=True, workers=workers)
    else:
        target = create_app(settings)
    uvicorn.run(target, host=host or server.host, port=port or server.port,
                ws_max_size=server.max_frame_bytes + 4096, proxy_headers=bool(server.trusted_proxies),
                forwarded_allow_ips=list(server.trusted_proxies), server_header=False, **options)


@app.command()
def shell(config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
          channel: Annotated[str, typer.Option(help="Channel to answer for: web, app or wechat")] = "web") -> None:
    """Chat with the bot in the terminal and see what the NLU understood. Ctrl-D or /exit quits."""
    from bot.shell import run_shell

    run_shell(_agent(_config(config, project)), channel)


def _agent(settings: Any) -> Any:
    from bot.assistant import Assistant, NoModelError

    try:
        return Assistant.load(settings)
    except NoModelError as e:
        _fail(str(e))


@app.command()
def validate(config: ConfigOption = Path("config.yml"), project: ProjectOption = None) -> None:
    """Check the training data and knowledge base; exits non-zero when anything is wrong."""
    from bot.validate import validate_project

    _report(*validate_project(_config(config, project, report=True)))


@data_app.command("validate")
def data_validate(config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                  fail_on_warnings: Annotated[bool, typer.Option(help="Exit non-zero on warnings too")] = False
                  ) -> None:
    """Rasa's data checks: intents vs domain, responses and actions used but not defined, unused responses,
    stories contradicting rules, examples in two intents."""
    from bot.validate import validate_data

    _report(*validate_data(_config(config, project, report=True)), fail_on_warnings=fail_on_warnings)


def _report(problems: list[str], warnings: list[str], fail_on_warnings: bool = False) -> None:
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    for problem in problems:
        typer.secho(f"error: {problem}", fg=typer.colors.RED, err=True)
    if problems or (fail_on_warnings and warnings):
        raise typer.Exit(1)
    typer.echo(f"ok ({len(warnings)} warnings)")


test_app = typer.Typer(help="Test the bot: k-fold cross-validation of the NLU, or Rasa test stories end to end.",
                       invoke_without_command=True)
app.add_typer(test_app, name="test")


@test_app.callback()
def test_command(ctx: typer.Context, config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                 folds: Annotated[int, typer.Option(help="Number of cross-validation folds")] = 5,
                 out: Annotated[Path, typer.Option(help="Directory for the report files")] = Path("results")) -> None:
    """k-fold cross-validation of the training data: per-intent report, confusion matrix, errors."""
    if ctx.invoked_subcommand is not None:
        return
    from bot.crossval import cross_validate

    summary = cross_validate(_config(config, project), folds=folds, out=out)
    typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))


@test_app.command("stories")
def test_stories(config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                 stories: Annotated[Path | None, typer.Option("--stories", help="A test stories file or folder "
                                                              "(default: the project's tests/)")] = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """Rasa test stories end to end through NLU and dialogue (`rasa test core`): the failed ones annotated."""
    from bot.eval.stories import evaluate_test_stories
    from bot.training_data import TrainingDataError, load_training_data

    settings = _config(config, project)
    try:
        tests = load_training_data(stories) if stories else _project_test_stories(settings)
    except TrainingDataError as e:
        _fail(str(e))
    found = [*tests.test_stories, *tests.stories] if stories else tests.test_stories
    if not found:
        _fail(f"no test stories found in {stories or settings.path(settings.nlu_data) / 'tests'}")
    result = evaluate_test_stories(settings, _ready_assistant(settings), found)
    failed = result.pop("failed_stories")
    if as_json:
        typer.echo(json.dumps({**result, "failed_stories": failed}, ensure_ascii=False))
        return
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    for story in failed:
        typer.echo(story)
    if result["failed"]:
        raise typer.Exit(1)


@test_app.command("conversations")
def test_conversations(config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                       directory: Annotated[Path | None, typer.Option(
                           "--dir", help="Folder of conversation tests (default: the project's tests/conversations)")]
                       = None,
                       as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """Conversation tests (tests/conversations/*.yml, Rasa's test stories with slots and responses) on the
    current model; the failed ones annotated; exit 1 on a failure."""
    from bot.trainer.conversation_tests import ConversationTestError, load_tests, run_tests, tests_dir

    settings = _config(config, project)
    folder = tests_dir(settings, directory)
    try:
        stories = load_tests(folder) if folder.is_dir() else []
    except ConversationTestError as e:
        _fail(str(e))
    if not stories:
        _fail(f"no conversation tests found in {folder} (*.yml with a `stories:` list)")
    result = run_tests(settings, _ready_assistant(settings), stories)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "failures"}, ensure_ascii=False, indent=2))
        for failure in result["failures"]:
            typer.echo(failure)
    if result["failed"]:
        raise typer.Exit(1)


def _project_test_stories(settings: Any) -> Any:
    from bot.training_data import load_training_data

    return load_training_data(settings.path(settings.nlu_data))


def _ready_assistant(settings: Any) -> Any:
    """The newest model, trained first when there is none or the training data changed (as `bot run` does)."""
    from bot.assistant import Assistant
    from bot.model import is_stale, latest_model_dir

    latest = latest_model_dir(settings)
    if latest is None or is_stale(latest, settings):
        typer.echo("no model of the current training data: training the bot first", err=True)
        latest = _train_with_progress(settings)
    return Assistant.load(settings, latest)


@eval_app.command("intents")
def eval_intents(train: Annotated[list[Path], typer.Option("--train", help="TSV text<TAB>intent; repeatable")],
                 test: Annotated[Path, typer.Option("--test", help="TSV text<TAB>intent")],
                 config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                 threshold: Annotated[str | None, typer.Option(
                     help="OOS threshold: a number, 'auto' (5-fold CV on --train) or 'auto+support'")] = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """Train on intent TSV files and score another."""
    from bot.eval.intents import evaluate_intents

    _print(_evaluate(evaluate_intents, train, test, _config(config, project), threshold=threshold), as_json)


@eval_app.command("pairs")
def eval_pairs(train: Annotated[Path, typer.Option("--train")], dev: Annotated[Path, typer.Option("--dev")],
               test: Annotated[Path, typer.Option("--test")], config: ConfigOption = Path("config.yml"),
               project: ProjectOption = None,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Paraphrase detection on text_a<TAB>text_b<TAB>label files; the threshold is chosen on --dev."""
    from bot.eval.pairs import evaluate_pairs

    _print(_evaluate(evaluate_pairs, train, dev, test, _config(config, project)), as_json)


@eval_app.command("qa")
def eval_qa(answers: Annotated[Path, typer.Option("--answers")], test: Annotated[Path, typer.Option("--test")],
            train: Annotated[Path | None, typer.Option("--train")] = None, config: ConfigOption = Path("config.yml"),
            project: ProjectOption = None,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Rank each question's candidate answers (answers.tsv + questions JSONL)."""
    from bot.eval.qa import evaluate_qa

    _print(_evaluate(evaluate_qa, answers, test, _config(config, project), train_file=train), as_json)


@eval_app.command("replay")
def eval_replay(file: Annotated[Path, typer.Option("--file", help="Labels TSV (file, line, column, label, half) "
                                                   "or a text file with one message a line")],
                labels: Annotated[Path | None, typer.Option("--labels", help="Labels of a text --file: "
                                                            "line<TAB>label[<TAB>half]")] = None,
                half: Annotated[str | None, typer.Option("--half", help="Only this half: tune or report")] = None,
                data_root: Annotated[Path | None, typer.Option("--data-root", help="Where a labels TSV's data files "
                                                               "are (default ../shared/datasets)")] = None,
                per_message: Annotated[bool, typer.Option("--per-message", help="Also a JSON line a message")] = False,
                config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """Replay customer messages through the bot, a fresh conversation each, and score what it did."""
    from bot.eval.datasets import DatasetError
    from bot.eval.replay import evaluate_replay

    settings = _config(config, project)
    agent = _ready_assistant(settings)  # as `bot run`: answer with a model of the current data
    try:
        summary, results = evaluate_replay(file, settings, agent, labels=labels, half=half, data_root=data_root)
    except DatasetError as e:
        _fail(str(e))
    _print(summary, as_json)
    if per_message:
        for result in results:
            sys.stdout.write(json.dumps(result.as_json(), ensure_ascii=False) + "\n")


@eval_app.command("calibrate")
def eval_calibrate(file: Annotated[Path, typer.Option("--file", help="Labels TSV (file, line, column, label, half) "
                                                      "or a text file with one message a line")],
                   labels: Annotated[Path | None, typer.Option("--labels", help="Labels of a text --file")] = None,
                   half: Annotated[str | None, typer.Option("--half", help="Only this half: fit on tune, never "
                                                            "on the half you report")] = None,
                   data_root: Annotated[Path | None, typer.Option("--data-root")] = None,
                   config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
                   as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """Fit the calibrated ranking of intents and knowledge entries on labelled real messages; prints the
    `dialogue.calibration` block for config.yml and how calibrated it is on those messages."""
    from bot.eval.calibration import fit_ranking
    from bot.eval.datasets import DatasetError
    from bot.eval.replay import default_data_root, read_items

    settings = _config(config, project)
    try:
        items = read_items(file, data_root or default_data_root(settings), labels, half)
    except DatasetError as e:
        _fail(str(e))
    unlabelled = [i.ref for i in items if i.label is None]
    if unlabelled:
        _fail(f"calibration needs a label on every message; {len(unlabelled)} have none, e.g. {unlabelled[0]}")
    agent = _ready_assistant(settings)
    try:
        result = fit_ranking(items, lambda text: dict(agent.parse(text, channel="rest")),
                             settings.dialogue.out_of_scope_entities)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    sources = result["calibration"]
    typer.echo("dialogue:\n  calibration:")
    for kind in ("intent", "knowledge"):
        values = ", ".join(f"{key}: {value}" for key, value in sources[kind].items())
        typer.echo(f"    {kind}: {{{values}}}")
    reliability = result["reliability"]
    typer.echo(f"# fitted on {result['n']} messages; ECE {reliability['ece']} on them", err=True)


@agents_app.command("add")
def agents_add(username: Annotated[str, typer.Argument(help="Login name")],
               name: Annotated[str, typer.Option("--name", help="Name the customer sees, e.g. 小王")],
               groups: Annotated[list[str], typer.Option("--group", help="Skill group it serves; repeatable")],
               role: Annotated[str, typer.Option(
                   help="agent, supervisor, admin, trainer (the trainer's workbench at /trainer) or manager "
                        "(the operations dashboard at /ops)")] = "agent",
               max_chats: Annotated[int, typer.Option(help="Chats at once")] = 3,
               employee_no: Annotated[str | None, typer.Option(
                   "--employee-no", help="工号, told to customers with the name, e.g. 1024")] = None,
               config: ConfigOption = Path("config.yml"), project: ProjectOption = None) -> None:
    """Create an agent account; the password is asked for (or read from BOT_AGENT_PASSWORD) and stored hashed."""
    import os
    import re

    from bot.handoff.agents import AccountError, create_agent
    from bot.handoff.desk import set_employee_no
    from bot.storage import Database

    settings = _config(config, project)
    known = {g.name for g in settings.handoff.groups}
    unknown = [g for g in groups if g not in known]
    if unknown:
        _fail(f"unknown skill group(s) {unknown}; config.yml has {sorted(known)}")
    if employee_no is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,16}", employee_no):
        _fail(f"--employee-no takes 1-16 letters, digits or '-', not {employee_no!r}")
    password = os.environ.get("BOT_AGENT_PASSWORD") or typer.prompt("password", hide_input=True,
                                                                     confirmation_prompt=True)
    database = Database(settings.storage.url, root=settings.root)
    try:
        account = create_agent(database, username, name, password, role=role, groups=groups, max_chats=max_chats)
    except AccountError as e:
        _fail(str(e))
    if employee_no:
        set_employee_no(database, username, employee_no)
    number = f", 工号{employee_no}" if employee_no else ""
    typer.echo(f"agent {account.username} ({account.display_name}{number}, {account.role}) serves "
               f"{', '.join(groups)}")


@agents_app.command("disable")
def agents_disable(username: Annotated[str, typer.Argument(help="Login name")],
                   config: ConfigOption = Path("config.yml"), project: ProjectOption = None) -> None:
    """Disable an account: it cannot log in and its sessions end at once (on every worker)."""
    _set_disabled(username, True, config, project)


@agents_app.command("enable")
def agents_enable(username: Annotated[str, typer.Argument(help="Login name")],
                  config: ConfigOption = Path("config.yml"), project: ProjectOption = None) -> None:
    """Enable a disabled account again (with its old password; earlier sessions stay ended)."""
    _set_disabled(username, False, config, project)


def _set_disabled(username: str, disabled: bool, config: Path, project: Path | None) -> None:
    from bot.handoff.agents import AccountError, set_disabled
    from bot.storage import Database

    settings = _config(config, project)
    try:
        set_disabled(Database(settings.storage.url, root=settings.root), username, disabled)
    except AccountError as e:
        _fail(str(e))
    typer.echo(f"agent {username} {'disabled' if disabled else 'enabled'}")


@app.command()
def report(start: Annotated[str | None, typer.Option(
               "--from", help="First day, YYYY-MM-DD (Beijing time; default today)")] = None,
           end: Annotated[str | None, typer.Option(
               "--to", help="Last day, YYYY-MM-DD (included; default --from)")] = None,
           group: Annotated[str | None, typer.Option("--group", help="Only this skill group")] = None,
           channel: Annotated[str | None, typer.Option("--channel", help="web, app, wechat, wecom or rest")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object (as /api/ops/kpis)")]
           = False,
           config: ConfigOption = Path("config.yml"), project: ProjectOption = None) -> None:
    """The contact centre's figures for a period (containment, escalation, first response, service level, CSAT...):
    Markdown, or JSON with --json; the same computation as GET /api/ops/kpis (definitions: README, bot/ops/kpis.py)."""
    from bot.ops import kpis
    from bot.storage import Database

    settings = _config(config, project)
    try:
        period = kpis.Period.parse(start, end, group, channel)
    except kpis.PeriodError as e:
        _fail(str(e))
    figures = kpis.summary(kpis.load(Database(settings.storage.url, root=settings.root), settings, period), settings)
    typer.echo(json.dumps(figures, ensure_ascii=False, indent=2) if as_json else kpis.markdown(figures))


@app.command()
def review(since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC; default 30 days ago)")] = None,
           until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (UTC; default today)")] = None,
           channel: Annotated[str | None, typer.Option(help="web, app, wechat, wecom or rest")] = None,
           intent: Annotated[str | None, typer.Option(help="Only messages parsed as this intent")] = None,
           outcome: Annotated[str | None, typer.Option(
               help="answer, clarify, out_of_scope, handoff or fallback")] = None,
           band: Annotated[str | None, typer.Option(help="Confidence band: low, medium or high")] = None,
           status: Annotated[str, typer.Option(
               help="open (not reviewed), dismissed, fixed, out_of_scope or all")] = "open",
           limit: Annotated[int, typer.Option(help="Groups to show (1-100)")] = 20,
           config: ConfigOption = Path("config.yml"), project: ProjectOption = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print the inbox page as one JSON object")] = False
           ) -> None:
    """The review inbox: customer messages that need a trainer, near-identical ones grouped, most important first."""
    from pydantic import ValidationError

    from bot.storage import Database
    from bot.trainer.inbox import InboxContext, InboxFilters, build_inbox

    try:
        filters = InboxFilters(since=since, until=until, channel=channel, intent=intent, outcome=outcome,
                               band=band, status=status, page_size=limit)
    except ValidationError as e:
        _fail("; ".join(f"--{'.'.join(map(str, err['loc'])).replace('_', '-')}: {err['msg']}" for err in e.errors()))
    settings = _config(config, project)
    context = InboxContext.from_assistant(_agent(settings))
    page = build_inbox(Database(settings.storage.url, root=settings.root), context,
                       filters)
    if as_json:
        sys.stdout.write(page.model_dump_json() + "\n")
        return
    typer.echo(f"待审核 review inbox {page.since} – {page.until}: {page.total_groups} 组 groups, "
               f"{page.total_messages} 条 messages")
    typer.echo("  #  得分score  条数count  渠道channels      最近last     原因reasons / 意图intent / 示例sample")
    for rank, group in enumerate(page.groups, start=1):
        channels = ",".join(f"{name}:{n}" for name, n in group.channels.items())
        reasons = ",".join(group.reasons)
        top = group.intents[0].name if group.intents else "-"
        typer.echo(f"{rank:>3}  {group.score:>9}  {group.count:>9}  {channels:<16}  {group.last_at:%Y-%m-%d}  "
                   f"{reasons} / {top} / {' | '.join(group.samples)}")


def _evaluate(evaluate: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run an evaluation; a bad data file ends the command with the reader's message, not a traceback."""
    from bot.eval.datasets import DatasetError

    try:
        return evaluate(*args, **kwargs)
    except (DatasetError, ValueError) as e:
        _fail(str(e))
    raise AssertionError("unreachable")


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return
    for key, value in result.items():
        typer.echo(f"{key:>20}: {value}")


if __name__ == "__main__":
    app()
