"""The `sunlight` command line (contract section 4)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Iterator

import orjson

from streams.settings import Settings

log = logging.getLogger("sunlight")


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--now must be an RFC 3339 time such as 2026-03-02T09:15:00+08:00, got {text!r}")
    if moment.tzinfo is None:
        raise SystemExit(f"--now needs a UTC offset, got {text!r}")
    return moment


def read_event_lines(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) for each non-empty line; the key is the case_id when the line is readable."""
    with open(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            key = None
            try:
                obj = orjson.loads(line)
                if isinstance(obj, dict) and isinstance(obj.get("case_id"), str):
                    key = obj["case_id"].encode()
            except orjson.JSONDecodeError:
                pass
            yield key, line


async def _replay(settings: Settings, events: Path, catalog: Path, now: datetime | None,
                  show_progress: bool = True) -> dict:
    return await _push(settings, list(read_event_lines(events)), catalog, now, show_progress)


async def _push(settings: Settings, messages: list, catalog: Path, now: datetime | None,
                show_progress: bool = True) -> dict:
    """Run the pipeline over `messages` and wait until every event is processed and written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed

    async with running_pipeline(settings, catalog, clock=replay_clock(now)) as running:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), disable=not show_progress, transient=False) as bar:
            sent = bar.add_task("sent     ", total=len(messages))
            done = bar.add_task("processed", total=len(messages))
            await produce(running.bootstrap, settings.case_events_topic, messages,
                          on_sent=lambda n: bar.update(sent, completed=n))
            # Everything in the topic, including what an earlier, interrupted run left unprocessed.
            ends = await topic_ends(running)
            bar.update(done, total=sum(ends.values()))
            await wait_until_processed(running.pipeline, ends, on_progress=lambda n: bar.update(done, completed=n))
        progress = running.pipeline.progress
        return {"events": len(messages), "new": progress.events_new, "duplicates": progress.events_duplicate,
                "dead_lettered": progress.dead_letters, "alert_changes": progress.alerts_changed}



def cmd_replay(args, settings: Settings) -> int:
    summary = asyncio.run(_replay(settings, Path(args.events), Path(args.catalog), _parse_now(args.now),
                                  show_progress=sys.stderr.isatty()))
    print(f"replayed {summary['events']} events: {summary['new']} new, {summary['duplicates']} duplicates, "
          f"{summary['dead_lettered']} to the dead-letter topic; {summary['alert_changes']} alert changes",
          file=sys.stderr)
    return 0


def cmd_import(args, settings: Settings) -> int:
    """Import a log: map it, write rejects, and push it through the pipeline (or only publish it)."""
    from alerts.mapping import load_mapping
    from streams.catalog_source import read_yaml
    from streams.importers import convert

    source = Path(args.file)
    mapping = load_mapping(read_yaml(Path(args.mapping), "mapping")) if args.mapping else None
    result = convert(source, mapping)
    rejects = Path(args.rejects or f"{source.name}.rejects.jsonl")
    with open(rejects, "wb") as handle:
        for reject in result.rejected:
            handle.write(orjson.dumps({"file": str(source), **reject}) + b"\n")
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in result.events]
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.case_events_topic, messages))
        processed = None
    else:
        catalog = Path(args.catalog or settings.catalog or "")
        if not catalog.is_file():
            raise SystemExit("sunlight import on the embedded defaults runs the pipeline and needs a catalog: "
                             "--catalog FILE or SUNLIGHT_CATALOG")
        processed = asyncio.run(_push(settings, messages, catalog, _parse_now(args.now),
                                      show_progress=sys.stderr.isatty()))
    duplicated = result.duplicated_in_file + (processed["duplicates"] if processed else 0)
    imported = processed["new"] if processed else len(result.events)
    print(f"{source.name}: {result.rows} rows read, {imported} events imported"
          f"{'' if processed else ' (published to ' + settings.case_events_topic + ')'}, "
          f"{len(result.rejected)} rejected (reasons in {rejects}), {duplicated} duplicated, "
          f"{result.skipped} skipped"
          + (f", {processed['dead_lettered']} refused by the pipeline (see case-events-dlq)" if processed else ""),
          file=sys.stderr)
    return 0


def cmd_import_bpmn(args, settings: Settings) -> int:
    """Turn a BPMN flowchart into an item's nodes: print them, or write them into a catalog file."""
    import yaml

    from alerts.catalog import load_catalog
    from alerts.flowchart import catalog_nodes, read_bpmn
    from streams.catalog_source import read_yaml

    nodes = catalog_nodes(read_bpmn(Path(args.file).read_bytes(), strict=args.strict))
    if not args.catalog:
        sys.stdout.write(yaml.safe_dump({"code": args.item, "nodes": nodes}, allow_unicode=True, sort_keys=False))
        return 0
    path = Path(args.catalog)
    raw = read_yaml(path, "catalog")
    item = next((i for i in raw.get("items") or [] if str(i.get("code")) == args.item), None)
    if item is None:
        raise SystemExit(f"sunlight: item {args.item!r} is not in {path}; add it (code, name, category, "
                         f"department, promised_days) first")
    item["nodes"] = nodes
    load_catalog(raw)  # refuse to write a catalog that would not load
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    print(f"{path}: item {args.item} now has {len(nodes)} nodes from {args.file}", file=sys.stderr)
    return 0


def user_scope(args, settings: Settings):
    """The scope asked for with --department / --region, checked against the catalog."""
    from sinks.scope import Scope

    if not args.department and not args.region:
        return Scope.everything()
    catalog = _load_catalog(args, settings, "a scope (--department / --region) is checked against the catalog")
    return Scope.of(args.department, args.region).resolve(catalog)


def _load_catalog(args, settings: Settings, why: str):
    from alerts.catalog import load_catalog
    from streams.catalog_source import read_yaml

    catalog = Path(args.catalog or settings.catalog or "")
    if not catalog.is_file():
        raise SystemExit(f"sunlight: {why}: --catalog FILE or SUNLIGHT_CATALOG")
    return load_catalog(read_yaml(catalog, "catalog"))


def _server_client(settings: Settings):
    """A client of the ClickHouse server; access control does not exist in embedded chdb."""
    from sinks.clickhouse import connect

    if settings.embedded_store:
        raise SystemExit("sunlight: users and row policies need a ClickHouse server (SUNLIGHT_CLICKHOUSE); "
                         "the embedded store (chdb) has no access control")
    return connect(settings.clickhouse, settings.data_dir)


def cmd_access_apply(args, settings: Settings) -> int:
    """Create a role and row policies per department and region of the catalog (idempotent)."""
    from sinks.access import policy_statements

    catalog = _load_catalog(args, settings, "roles are made for the catalog's departments and regions")
    if args.print:
        for statement in policy_statements(catalog, args.database or "default"):
            print(statement + ";")
        return 0
    client = _server_client(settings)
    try:
        statements = policy_statements(catalog, args.database or client.database or "default")
        for statement in statements:
            client.command(statement)
    finally:
        client.close()
    print(f"applied {len(statements)} statements: roles and row policies for {len(catalog.departments)} "
          f"departments", file=sys.stderr)
    return 0


def cmd_access_add_user(args, settings: Settings) -> int:
    """Create a user who sees one or more departments and regions (the password is never shown)."""
    import getpass
    import os

    from sinks.access import ALL_ROLE, department_role, region_role, user_statements
    from sinks.scope import Scope

    catalog = _load_catalog(args, settings, "a user's scope is checked against the catalog")
    if args.everything:
        roles = [ALL_ROLE]
    else:
        scope = Scope.of(args.department, args.region)
        scope.resolve(catalog)  # refuses unknown codes
        roles = [department_role(d) for d in sorted(scope.departments)] + [region_role(r) for r in sorted(scope.regions)]
    password = os.environ.get("SUNLIGHT_NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
    if not password:
        raise SystemExit("sunlight: a password is needed (SUNLIGHT_NEW_USER_PASSWORD or the prompt)")
    client = _server_client(settings)
    try:
        for statement in user_statements(args.user, password, roles):
            client.command(statement)
    finally:
        client.close()
    print(f"user {args.user}: roles {', '.join(roles)}", file=sys.stderr)
    return 0


def cmd_export(args, settings: Settings) -> int:
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import export_alerts

    scope = user_scope(args, settings)
    log.info("exporting alerts of %s", scope.describe())
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        out = sys.stdout.buffer
        for record in export_alerts(client, scope, include_withdrawn=args.all):
            out.write(orjson.dumps(record) + b"\n")
        out.flush()
    finally:
        client.close()
    return 0


def cmd_worker(args, settings: Settings) -> int:
    from streams.runtime import running_pipeline

    catalog = Path(args.catalog or settings.catalog or "")
    if not catalog.is_file():
        raise SystemExit("sunlight worker needs a catalog: --catalog FILE or SUNLIGHT_CATALOG")

    async def run() -> None:
        async with running_pipeline(settings, catalog) as running:
            log.warning("worker running against %s; Ctrl-C to stop", running.bootstrap)
            await running.worker.wait_until_stopped()  # SIGINT / SIGTERM stop the Faust worker

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from streams.demo import run_demo

    return asyncio.run(run_demo(settings, duration=args.duration, cases=args.cases, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sunlight", description="Sunlight (阳光监察): e-supervision of "
                                     "administrative power cases, streamed.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on embedded defaults over a generated city")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--cases", type=int, default=800, help="cases to generate")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser("replay", help="push a JSON-lines file of case events through the pipeline")
    replay.add_argument("events")
    replay.add_argument("--catalog", required=True)
    replay.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    replay.set_defaults(func=cmd_replay)

    imp = sub.add_parser("import", help="import an event log (contract JSON lines, CSV or XES with a mapping)")
    imp.add_argument("file")
    imp.add_argument("--mapping", help="mapping YAML (columns, activities, timezone); none for contract JSON lines")
    imp.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    imp.add_argument("--rejects", help="where to write rejected rows (default: FILE.rejects.jsonl here)")
    imp.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    imp.set_defaults(func=cmd_import)

    catalog = sub.add_parser("catalog", help="the power catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    bpmn = catalog_sub.add_parser("import-bpmn", help="an item's nodes from a BPMN 2.0 flowchart (流程图)")
    bpmn.add_argument("file")
    bpmn.add_argument("--item", required=True, help="the item code")
    bpmn.add_argument("--catalog", help="write the nodes into this catalog file (default: print them)")
    bpmn.add_argument("--strict", action="store_true", help="refuse loops instead of accepting them as re-work")
    bpmn.set_defaults(func=cmd_import_bpmn)

    alerts = sub.add_parser("alerts", help="stored alerts")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    export = alerts_sub.add_parser("export", help="print the stored alerts as JSON lines")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument("--all", action="store_true", help="include withdrawn alerts")
    export.add_argument("--department", action="append", default=[], metavar="CODE",
                        help="only this department's alerts (repeatable; with --region: either)")
    export.add_argument("--region", action="append", default=[], metavar="CODE",
                        help="only this region's alerts, its departments' included (repeatable)")
    export.add_argument("--catalog", help="the catalog a scope is checked against (default: SUNLIGHT_CATALOG)")
    export.set_defaults(func=cmd_export)

    access = sub.add_parser("access", help="users and row policies on a ClickHouse server")
    access_sub = access.add_subparsers(dest="access_command", required=True)
    apply = access_sub.add_parser("apply", help="a role and row policies per department and region")
    apply.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    apply.add_argument("--database", help="the database of Sunlight's tables (default: the URL's)")
    apply.add_argument("--print", action="store_true", help="print the statements instead of running them")
    apply.set_defaults(func=cmd_access_apply)
    add_user = access_sub.add_parser("add-user", help="a user who sees some departments and regions; the "
                                     "password comes from SUNLIGHT_NEW_USER_PASSWORD or a prompt")
    add_user.add_argument("user")
    add_user.add_argument("--department", action="append", default=[], metavar="CODE")
    add_user.add_argument("--region", action="append", default=[], metavar="CODE")
    add_user.add_argument("--everything", action="store_true", help="no restriction (operators, the pipeline)")
    add_user.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    add_user.set_defaults(func=cmd_access_add_user)

    worker = sub.add_parser("worker", help="run a long-lived stream worker")
    worker.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error, not a traceback, for operators
        from alerts.catalog import CatalogError
        from alerts.flowchart import FlowchartError
        from alerts.mapping import MappingError
        from streams.broker import BrokerError
        from sinks.clickhouse import StoreError
        from sinks.scope import UnknownScope
        from streams.importers import LogFormatError

        if isinstance(exc, (CatalogError, BrokerError, FileNotFoundError, MappingError, LogFormatError,
                            FlowchartError, UnknownScope, StoreError)):
            print(f"sunlight: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
