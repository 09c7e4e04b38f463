"""The `sunlight` command line (contract section 4): the parser of every command, and `main`, which
runs the one asked for. The commands themselves are in `streams.commands`, one module per
command group (`streams/commands/tickets.py` for `sunlight tickets ...`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from streams.commands.access import cmd_access_apply, cmd_access_add_user
from streams.commands.alerts import cmd_export
from streams.commands.cases import cmd_cases_show
from streams.commands.catalog import cmd_import_bpmn
from streams.commands.console import cmd_serve, cmd_users_add, cmd_users_list
from streams.commands.dashboards import cmd_dashboards_push, cmd_dashboards_export
from streams.commands.dlq import cmd_dlq_close, cmd_dlq_list, cmd_dlq_redrive
from streams.commands.importing import cmd_import
from streams.commands.notices import cmd_notices_resend
from streams.commands.pipeline import cmd_replay, cmd_worker, cmd_demo
from streams.commands.score import cmd_score
from streams.commands.silences import cmd_silences_add, cmd_silences_list, cmd_silences_expire
from streams.commands.tickets import cmd_tickets_list, cmd_tickets_show, cmd_tickets_act
from streams.settings import SettingError, Settings


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
    replay.add_argument("--notify", action="store_true", help="send the notices the replay's tickets raise "
                        "(default: record them only); exits once each is sent or recorded as failed")
    replay.set_defaults(func=cmd_replay)

    imp = sub.add_parser("import", help="import an event log (contract JSON lines, CSV or XES with a mapping)")
    imp.add_argument("file")
    imp.add_argument("--mapping", help="mapping YAML (columns, activities, timezone); none for contract JSON lines")
    imp.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    imp.add_argument("--rejects", help="where to write rejected rows (default: FILE.rejects.jsonl here)")
    imp.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    imp.add_argument("--notify", action="store_true", help="send the notices its tickets raise (default: "
                     "record them only)")
    imp.set_defaults(func=cmd_import)

    catalog = sub.add_parser("catalog", help="the power catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    for command, what in (("import-bpmn", "a BPMN 2.0 flowchart (流程图)"),
                          ("import-pnml", "a Petri net in PNML (a workflow net, as PM4Py or ProM write)")):
        model = catalog_sub.add_parser(command, help=f"an item's nodes from {what}")
        model.add_argument("file")
        model.add_argument("--item", required=True, help="the item code")
        model.add_argument("--catalog", help="write the nodes into this catalog file (default: print them)")
        model.add_argument("--strict", action="store_true", help="refuse loops instead of accepting them as re-work")
        model.add_argument("--accepted-completes", action="append", default=[], metavar="NODE",
                           help="a node (id or task name) that the case's acceptance completes, e.g. its 受理 task "
                                "(repeatable; a process model cannot say it)")
        model.add_argument("--closed-completes", action="append", default=[], metavar="NODE",
                           help="a node (id or task name) that the case's closing completes, e.g. its 办结 task "
                                "(repeatable)")
        model.add_argument("--decided-completes", metavar="NODE",
                           help="the node (id or task name) that the case's decision (decided) completes, e.g. its "
                                "决定 task: the item's decision_node (kept from the catalog when not given)")
        model.set_defaults(func=cmd_import_bpmn)

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
    add_user.add_argument("--everything", action="store_true",
                          help="no restriction on what it reads (operators; SELECT only: not the pipeline's own user)")
    add_user.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    add_user.set_defaults(func=cmd_access_add_user)

    cases = sub.add_parser("cases", help="stored cases")
    cases_sub = cases.add_subparsers(dest="cases_command", required=True)
    show = cases_sub.add_parser("show", help="a case's events, deadline and alerts, for checking it by hand")
    show.add_argument("case_id")
    show.add_argument("--catalog", help="the catalog (default: SUNLIGHT_CATALOG)")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--department", action="append", default=[], metavar="CODE", help="within this department")
    show.add_argument("--region", action="append", default=[], metavar="CODE", help="within this region")
    show.set_defaults(func=cmd_cases_show)

    dlq = sub.add_parser("dlq", help="dead letters: messages the pipeline refused, with the reason")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list", help="the dead letters kept in the store")
    listing.add_argument("--reason", help="only letters refused for this reason (e.g. unknown_item)")
    listing.add_argument("--format", choices=["table", "jsonl"], default="table")
    listing.add_argument("--all", action="store_true", help="also the letters already redriven or closed")
    listing.add_argument("--department", action="append", default=[], metavar="CODE")
    listing.add_argument("--region", action="append", default=[], metavar="CODE")
    listing.add_argument("--catalog", help="the catalog a scope is checked against (default: SUNLIGHT_CATALOG)")
    listing.set_defaults(func=cmd_dlq_list)
    redrive = dlq_sub.add_parser("redrive", help="send corrected events back through the pipeline and mark the "
                                 "letters they replace")
    redrive.add_argument("file", help="JSON lines: corrected events, or {\"letter_id\": ..., \"event\": {...}}")
    redrive.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    redrive.add_argument("--now", help="the clock open cases are judged against (default: the wall clock)")
    redrive.add_argument("--wait", type=float, default=60.0, help="with SUNLIGHT_KAFKA: seconds to wait for the "
                         "worker to store the events before marking letters")
    redrive.set_defaults(func=cmd_dlq_redrive)
    closing = dlq_sub.add_parser("close", help="close open letters that no corrected event can replace (a "
                                 "tombstone, a record naming no event, a refusal dealt with by hand), with the reason; "
                                 "kept, with who closed them and why")
    closing.add_argument("letter_ids", nargs="+", metavar="LETTER_ID", help="as `sunlight dlq list --format jsonl` "
                         "gives them")
    closing.add_argument("--reason", required=True, help="why, in words the inspectors read (shown with the letter)")
    closing.add_argument("--by", help="who closes them (default: the login name)")
    closing.add_argument("--judge-without", action="store_true",
                         help="for a letter whose case waits for its event: the record is no event of the case "
                              "(a status ping, junk); close it and judge the case without it")
    closing.add_argument("--catalog", help="with --judge-without on the embedded defaults: the catalog the cases "
                         "are judged with (default: SUNLIGHT_CATALOG)")
    closing.add_argument("--now", help="with --judge-without on the embedded defaults: the clock the cases are "
                         "judged against (default: the wall clock)")
    closing.set_defaults(func=cmd_dlq_close)

    tickets = sub.add_parser("tickets", help="supervision tickets (督办件): list, show, and act on them")
    tickets_sub = tickets.add_subparsers(dest="tickets_command", required=True)
    listing = tickets_sub.add_parser("list", help="the tickets in the store, latest version of each")
    listing.add_argument("--status", choices=["open", "replied", "returned", "closed", "withdrawn"])
    listing.add_argument("--format", choices=["table", "jsonl"], default="table")
    listing.add_argument("--department", action="append", default=[], metavar="CODE")
    listing.add_argument("--region", action="append", default=[], metavar="CODE")
    listing.add_argument("--catalog", help="the catalog a scope is checked against (default: SUNLIGHT_CATALOG)")
    listing.set_defaults(func=cmd_tickets_list)
    show = tickets_sub.add_parser("show", help="a ticket, its case's timeline and its whole history")
    show.add_argument("ticket_id")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--department", action="append", default=[], metavar="CODE")
    show.add_argument("--region", action="append", default=[], metavar="CODE")
    show.add_argument("--catalog", help="the catalog (default: SUNLIGHT_CATALOG)")
    show.set_defaults(func=cmd_tickets_show)
    for kind, text_required, helptext in [("reply", True, "the department answers: cause and rectification"),
                                          ("accept", False, "the inspector accepts the reply: the ticket closes"),
                                          ("return", True, "the inspector sends the reply back"),
                                          ("close", True, "the inspector closes the ticket, with the reason"),
                                          ("open", False, "an inspector opens a ticket from an alert (a yellow one)")]:
        act = tickets_sub.add_parser(kind, help=helptext)
        if kind == "open":
            act.add_argument("--alert", required=True, help="the alert's id")
        else:
            act.add_argument("ticket_id")
        act.add_argument("--text", required=text_required, default="")
        act.add_argument("--actor", help="who acts (default: a reply, the answering department's code; "
                         "otherwise the user, $USER)")
        act.add_argument("--department", help="the acting department (a reply: the ticket's; otherwise "
                         "the inspectors, 'inspection')")
        act.add_argument("--version", type=int, help="the ticket version acted on (default: the stored one)")
        act.add_argument("--action-id", help="the action's id (default: a new one); the same id again, e.g. "
                         "after an interrupted command, changes nothing")
        act.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
        act.add_argument("--now", help="the clock tickets are judged against (default: the wall clock)")
        act.set_defaults(func=cmd_tickets_act, kind=kind)

    notices = sub.add_parser("notices", help="the notices of supervision tickets: deliver failed ones again")
    notices_sub = notices.add_subparsers(dest="notices_command", required=True)
    resend = notices_sub.add_parser("resend", help="deliver again every notice whose latest outcome is failed "
                                    "(once the mail server is back)")
    resend.add_argument("--ticket", action="append", help="only this ticket's failed notices (repeatable)")
    resend.add_argument("--catalog", help="on the embedded defaults, the catalog the pipeline runs with "
                        "(default: SUNLIGHT_CATALOG)")
    resend.add_argument("--now", help="on the embedded defaults, the pipeline's clock (RFC 3339 with an offset; "
                        "default: now): the tickets' moments due by then are taken too, when there is "
                        "something to resend (else nothing runs: `sunlight replay` of an empty file moves "
                        "the tickets' clock)")
    resend.set_defaults(func=cmd_notices_resend)

    silences = sub.add_parser("silences", help="stop tickets and notices (never alerts) for an item or a "
                              "department, for a while")
    silences_sub = silences.add_subparsers(dest="silences_command", required=True)
    add = silences_sub.add_parser("add", help="a silence, on record, until a moment of the stream's clock")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--item", help="an item code (e.g. its process is being revised)")
    target.add_argument("--department", help="a department code")
    add.add_argument("--until", required=True, help="RFC 3339 time with an offset")
    add.add_argument("--reason", required=True)
    add.add_argument("--actor", default=os.environ.get("USER") or "inspector")
    add.add_argument("--catalog", help="the catalog the item or department is checked against "
                     "(default: SUNLIGHT_CATALOG)")
    add.set_defaults(func=cmd_silences_add)
    listing = silences_sub.add_parser("list", help="every silence, in force or not by the wall clock; times in "
                                      "the catalog's timezone (Asia/Shanghai when none is named)")
    listing.add_argument("--format", choices=["table", "jsonl"], default="table")
    listing.add_argument("--catalog", help="the catalog whose timezone times are shown in (default: SUNLIGHT_CATALOG)")
    listing.set_defaults(func=cmd_silences_list)
    expire = silences_sub.add_parser("expire", help="end a silence now (or at --at)")
    expire.add_argument("silence_id")
    expire.add_argument("--at", help="RFC 3339 time with an offset (default: now)")
    expire.add_argument("--catalog", help="the catalog whose timezone the time is shown in (default: SUNLIGHT_CATALOG)")
    expire.set_defaults(func=cmd_silences_expire)

    grafana = sub.add_parser("dashboards", help="Grafana: push the dashboards and datasources, or export them "
                             "for file provisioning (docs/grafana.md)")
    grafana_sub = grafana.add_subparsers(dest="dashboards_command", required=True)
    push = grafana_sub.add_parser("push", help="create or update the folder 阳光监察, the ClickHouse and Prometheus "
                                  "datasources and the dashboards in the Grafana at SUNLIGHT_GRAFANA_URL (token: "
                                  "SUNLIGHT_GRAFANA_TOKEN); writes only what differs")
    push.add_argument("--clickhouse-url", help="the ClickHouse server as Grafana reaches it, http(s)://USER@HOST:PORT/"
                      "DATABASE (clickhouse:// for the native protocol), with a viewer's user, never the pipeline's; "
                      "the password from SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD or the URL")
    push.add_argument("--clickhouse-user", help="the datasource's ClickHouse user (default: the URL's): a viewer "
                      "group's own user, limited by its row policies")
    push.add_argument("--prometheus-url", default="http://localhost:9090",
                      help="the Prometheus as Grafana reaches it (default: http://localhost:9090)")
    push.add_argument("--update-secrets", action="store_true", help="write the ClickHouse password even where "
                      "Grafana has one (Grafana never shows a stored password, so a push cannot compare it)")
    push.add_argument("--dry-run", action="store_true", help="print what would change; only read")
    push.add_argument("--catalog", help="the catalog whose timezone the dashboards count days and months in "
                      "(default: SUNLIGHT_CATALOG; without one, Asia/Shanghai)")
    push.set_defaults(func=cmd_dashboards_push)
    export_files = grafana_sub.add_parser("export", help="write the dashboards as JSON files, one per uid, for "
                                          "Grafana's file provisioning")
    export_files.add_argument("dir")
    export_files.add_argument("--provisioning", metavar="DIR", help="also write the provisioning YAML (both "
                              "datasources, the dashboard file provider) under DIR")
    export_files.add_argument("--dashboards-path", default="/var/lib/grafana/dashboards",
                              help="where Grafana reads the JSON files, for the file provider "
                              "(default: /var/lib/grafana/dashboards)")
    export_files.add_argument("--catalog", help="the catalog whose timezone the dashboards count days and months "
                              "in (default: SUNLIGHT_CATALOG; without one, Asia/Shanghai)")
    export_files.set_defaults(func=cmd_dashboards_export)

    serve = sub.add_parser("serve", help="the console on SUNLIGHT_HTTP_PORT: inspectors and heads sign in, "
                           "departments answer through the link in their notice (docs/console.md)")
    serve.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    serve.add_argument("--host", default="0.0.0.0", help="the address to listen on (default: 0.0.0.0)")
    serve.set_defaults(func=cmd_serve)

    users = sub.add_parser("users", help="the console's users (a file of password hashes: SUNLIGHT_USERS)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add_console_user = users_sub.add_parser("add", help="add or replace a user; the password comes from "
                                            "SUNLIGHT_NEW_USER_PASSWORD or a prompt")
    add_console_user.add_argument("name")
    add_console_user.add_argument("--role", required=True, choices=["inspector", "head"])
    add_console_user.add_argument("--department", help="a head's department (its code in the catalog)")
    add_console_user.add_argument("--catalog", help="the catalog the department is checked against "
                                  "(default: SUNLIGHT_CATALOG)")
    add_console_user.set_defaults(func=cmd_users_add)
    list_users = users_sub.add_parser("list", help="the users, their roles and departments (never a hash)")
    list_users.set_defaults(func=cmd_users_list)

    score = sub.add_parser("score", help="monthly performance scores (绩效考核) of departments or regions, "
                           "by the rulebook (default: the Wuxi rules); stored as a new version in `scores`")
    score.add_argument("--month", required=True, help="the month scored, YYYY-MM (local business time)")
    score.add_argument("--by", choices=["department", "region"], default="department",
                       help="department: city departments (attachment 2); region: 市(县)区 (attachment 1)")
    score.add_argument("--format", choices=["table", "csv", "xlsx", "jsonl"], default="table")
    score.add_argument("--inputs", metavar="FILE", help="the month's input file (YAML): spot checks m, "
                       "unapplied catalog changes p, complaint deductions, coverage")
    score.add_argument("--rulebook", metavar="FILE", help="a city's own rulebook (default: SUNLIGHT_RULEBOOK, else "
                                                         "alerts/rulebooks/wuxi.yaml)")
    score.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    score.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout (required for xlsx)")
    score.set_defaults(func=cmd_score)

    worker = sub.add_parser(
        "worker", help="run a long-lived stream worker", formatter_class=argparse.RawDescriptionHelpFormatter,
        # What an operator looks for first (found by a black-box test: the help named no setting).
        epilog="settings (environment; README.md lists every one, with its default):\n"
               "  SUNLIGHT_KAFKA        Kafka bootstrap servers (unset: an embedded broker, one process)\n"
               "  SUNLIGHT_CLICKHOUSE   ClickHouse server URL (unset: the embedded store in SUNLIGHT_DATA_DIR)\n"
               "  SUNLIGHT_DATA_DIR     the embedded store and the tables' files (default ./sunlight-data)\n"
               "  SUNLIGHT_CATALOG      the power catalog (or --catalog)\n"
               "  SUNLIGHT_PARTITIONS   the topics' partitions, fixed once they exist (default 4)\n"
               "  SUNLIGHT_METRICS_PORT /metrics, /healthz, /readyz (default 9464; 0: off)\n"
               "  SUNLIGHT_SMTP, SUNLIGHT_WEBHOOK  where ticket notices go\n"
               "exit status: 0 when stopped by SIGTERM or SIGINT; else not 0, with the reason in one line\n"
               "(a setting, a file or the store refused at start) or in the log (the worker failed)")
    worker.add_argument("--catalog", help="catalog file (default: SUNLIGHT_CATALOG)")
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingError as exc:
        print(f"sunlight: {exc}", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other commands do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # a clear one-line error, not a traceback, for operators
        from alerts.catalog import CatalogError
        from alerts.flowchart import FlowchartError
        from alerts.mapping import MappingError
        from streams.broker import BrokerError
        from sinks.clickhouse import StoreError
        from sinks.scope import UnknownScope
        from streams.importers import LogFormatError

        from alerts.notices import TemplateError
        from sinks.notify import ChannelError
        from streams.app import PipelineFailed
        from streams.console.auth import ConsoleConfigError
        from sinks.migrations import MigrationFailed, MigrationInterrupted

        if isinstance(exc, (IsADirectoryError, NotADirectoryError, PermissionError, FileNotFoundError,
                            FileExistsError)) and exc.filename:  # a file that cannot be read or written
            setting = " (SUNLIGHT_DATA_DIR)" if _under(exc.filename, settings.data_dir) else ""
            print(f"sunlight: {exc.filename}{setting}: {exc.strerror}", file=sys.stderr)
            return 2
        if isinstance(exc, TemplateError):  # the city's notice templates: the setting that names them
            print(f"sunlight: {exc} (SUNLIGHT_NOTICE_TEMPLATES)", file=sys.stderr)
            return 2
        from alerts.scoring import ScoringError

        if isinstance(exc, ScoringError):  # the city's rulebook, read at start for its region names
            print(f"sunlight: {exc}" + (" (SUNLIGHT_RULEBOOK)" if settings.rulebook else ""), file=sys.stderr)
            return 2
        if isinstance(exc, (CatalogError, BrokerError, FileNotFoundError, MappingError, LogFormatError,
                            FlowchartError, UnknownScope, StoreError, PipelineFailed, ChannelError,
                            ConsoleConfigError, MigrationFailed, MigrationInterrupted)):
            print(f"sunlight: {exc}", file=sys.stderr)
            return 2
        raise


def _under(path, directory) -> bool:
    """Whether `path` is the data directory or in it: an error there names the setting to mend (a data
    directory that is a file, or not writable, was a traceback or a bare path; found by a black-box test)."""
    try:
        return Path(path).resolve().is_relative_to(Path(directory).resolve())
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
