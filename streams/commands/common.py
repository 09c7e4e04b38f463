"""What more than one command group uses: options read the same way (--now, --catalog, a scope),
the store opened or required, JSON lines printed, and the pipeline run over a command's input on
the embedded defaults. Each command group's module imports what it needs from here."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson

from streams.settings import Settings


def parse_now(text: str | None, option: str = "--now") -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"sunlight: {option} must be an RFC 3339 time such as 2026-03-02T09:15:00+08:00, "
                         f"got {text!r}")
    if moment.tzinfo is None:
        raise SystemExit(f"sunlight: {option} needs a UTC offset, got {text!r}")
    return moment


def local_zone(args, settings: Settings):
    """The catalog's timezone (--catalog or SUNLIGHT_CATALOG), Asia/Shanghai when none is named."""
    from zoneinfo import ZoneInfo

    if not (getattr(args, "catalog", None) or settings.catalog):
        return ZoneInfo("Asia/Shanghai")
    return ZoneInfo(catalog_for(args, settings, "").timezone)


async def push_events(settings: Settings, messages: list, catalog: Path, now: datetime | None,
                show_progress: bool = True, topic: str | None = None, letters: list = (), clock=None) -> dict:
    """Run the pipeline over `messages` (case events, or other input such as ticket actions:
    `topic`) and wait until every message is processed and written; `letters` (an import's dead
    letters) are kept as the pipeline keeps its own."""
    from streams.runtime import produce

    async def send(running, on_total, on_sent) -> int:
        on_total(len(messages))
        await produce(running.bootstrap, topic or settings.case_events_topic, messages, on_sent=on_sent)
        return len(messages)

    return await through_pipeline(settings, catalog, now, show_progress, send, letters, clock)


async def through_pipeline(settings: Settings, catalog: Path, now: datetime | None, show_progress: bool,
                            send, letters: list = (), clock=None) -> dict:
    """Start the pipeline, `send(running, on_total, on_sent)` its input (returns how many messages;
    tells the progress bar how many there are, then how many are sent), and wait until everything
    in the input topic is processed and written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.runtime import keep_letters, replay_clock, running_pipeline, topic_ends, wait_until_processed

    async with running_pipeline(settings, catalog, clock=clock or replay_clock(now)) as running:
        if letters:
            await keep_letters(settings, running.bootstrap, letters, writer=running.pipeline.writer)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), disable=not show_progress, transient=False) as bar:
            sent = bar.add_task("sent     ", total=None)
            done = bar.add_task("processed", total=None)
            count = await send(running, lambda n: bar.update(sent, total=n), lambda n: bar.update(sent, completed=n))
            bar.update(sent, total=count, completed=count)
            # Everything in the topic, including what an earlier, interrupted run left unprocessed.
            ends = await topic_ends(running)
            bar.update(done, total=sum(ends.values()))
            await wait_until_processed(running.pipeline, ends, on_progress=lambda n: bar.update(done, completed=n))
        progress = running.pipeline.progress
        return {"events": count, "new": progress.events_new, "duplicates": progress.events_duplicate,
                "dead_lettered": progress.dead_letters, "alert_changes": progress.alerts_changed,
                "conflicting": progress.letters_by_reason.get("conflicting_duplicate", 0)}


def command_clock(args):
    """The clock of a command acting on the store now (`streams.clock.CommandClock`)."""
    from streams.clock import CommandClock, wall_now

    return CommandClock(parse_now(args.now) or wall_now())


def notify_settings(settings: Settings, args) -> Settings:
    """History pushed through the pipeline records its notices; it sends them only with --notify."""
    import dataclasses

    notify = bool(getattr(args, "notify", False))
    if notify and not (settings.smtp or settings.webhook):
        raise SystemExit("sunlight: --notify needs a channel: SUNLIGHT_SMTP (with SUNLIGHT_MAIL_FROM) or "
                         "SUNLIGHT_WEBHOOK")
    return dataclasses.replace(settings, notify=notify)


def writable_path(path: Path, what: str) -> Path:
    """A file to write: a directory, or a path in no directory, ends the command in one line."""
    if path.is_dir() or not path.resolve().parent.is_dir():
        raise SystemExit(f"sunlight: {what} {path}: not a file in an existing directory")
    return path


# Said when events came under ids the store holds with other content: a file imported before and
# read otherwise now (another mapping, or a Sunlight whose reading changed: docs/importing.md).
CONFLICTING_NOTE = ("  {n} of them came under ids this store already holds with other content "
                "(conflicting_duplicate): the store keeps what it took first. If the file went into this "
                "store before and reads otherwise now (edited, another mapping, or an upgraded Sunlight), "
                "{what} it into a fresh store (another SUNLIGHT_DATA_DIR); docs/importing.md, \"Upgrading\".")


def reason_words(reason: str) -> str:
    """A dead letter's reason as people read it, with its code (for `dlq list --reason`)."""
    from alerts.letters import REASON_TITLE

    return f"{REASON_TITLE.get(reason, reason)}（{reason}）"


def catalog_if_any(path):
    """The catalog, to name the department of a dead letter whose row names only its item; none
    when no catalog is given (a letter then names what its row names)."""
    from alerts.catalog import load_catalog
    from streams.catalog_source import read_yaml

    return load_catalog(read_yaml(Path(path), "catalog")) if path and Path(path).is_file() else None


def user_scope(args, settings: Settings, catalog=None):
    """The scope asked for with --department / --region, checked against the catalog (`catalog`,
    when the command has read it already)."""
    from sinks.scope import Scope

    if not args.department and not args.region:
        return Scope.everything()
    if catalog is None:
        catalog = catalog_for(args, settings, "a scope (--department / --region) is checked against the catalog")
    return Scope.of(args.department, args.region).resolve(catalog)


def catalog_for(args, settings: Settings, why: str):
    from alerts.catalog import load_catalog
    from streams.catalog_source import read_yaml

    return load_catalog(read_yaml(catalog_path_for(args, settings, why), "catalog"))


def scope_and_local_time(args, settings: Settings):
    """`user_scope`, and the timezone times are shown in: the catalog's (`timezone`, as its cases
    are judged in), or Asia/Shanghai when no catalog is named (--catalog or SUNLIGHT_CATALOG). The
    catalog is read once for both."""
    scope, local, _ = scope_local_time_and_catalog(args, settings)
    return scope, local


def scope_local_time_and_catalog(args, settings: Settings):
    """`scope_and_local_time`, and the catalog (None when none is named)."""
    from zoneinfo import ZoneInfo

    if not (getattr(args, "catalog", None) or settings.catalog):
        return user_scope(args, settings), local_zone(args, settings), None
    catalog = catalog_for(args, settings, "")
    return user_scope(args, settings, catalog), ZoneInfo(catalog.timezone), catalog


def catalog_path_for(args, settings: Settings, why: str) -> Path:
    """The catalog file named by --catalog or SUNLIGHT_CATALOG; none named, or a name that is no
    file, ends the command saying which."""
    named = getattr(args, "catalog", None) or settings.catalog
    if not named:
        raise SystemExit(f"sunlight: {why}: --catalog FILE or SUNLIGHT_CATALOG")
    path = Path(named)
    if not path.is_file():
        source = "--catalog" if getattr(args, "catalog", None) else "SUNLIGHT_CATALOG"
        raise SystemExit(f"sunlight: {source} {named}: "
                         f"{'a directory, not a file' if path.is_dir() else 'no such file'}")
    return path


def print_jsonl(records) -> None:
    """One JSON object per line on stdout (times and other values as their strings)."""
    out = sys.stdout.buffer
    for record in records:
        out.write(orjson.dumps(record, default=str) + b"\n")
    out.flush()


def require_store(settings: Settings) -> None:
    """A command that only reads the store, on an embedded one that is not there (a mistyped
    SUNLIGHT_DATA_DIR), says so instead of creating an empty store and finding nothing in it."""
    if settings.embedded_store and not (Path(settings.data_dir) / "clickhouse").is_dir():
        raise SystemExit(f"sunlight: no store in {Path(settings.data_dir).resolve()} (SUNLIGHT_DATA_DIR): nothing has "
                         f"been replayed or imported there")


@contextmanager
def open_store(settings: Settings):
    """A client of the store, migrated, closed afterwards."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        yield client
    finally:
        client.close()
