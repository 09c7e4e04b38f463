"""`sunlight score`: a month's performance scores (绩效考核)."""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson

from streams.commands.common import writable_path, catalog_for, require_store, open_store
from streams.settings import Settings


def cmd_score(args, settings: Settings) -> int:
    """Monthly performance scores (绩效考核): the month's facts from the store, the input file and
    the rulebook; prints the ranking with every part's inputs and points and stores it as a new
    version in `scores`. See docs/scoring.md."""
    from zoneinfo import ZoneInfo

    from alerts.scoring import (ScoringError, check_inputs_scored, city_region_unknown, load_inputs, month_bounds,
                                parse_month, score_month)
    from sinks.scoring_inputs import digest, month_facts, write_scores
    from streams.catalog_source import file_bytes, rulebook_file, yaml_of

    # Every option is checked before the store is opened: a refused command stores nothing.
    if args.format == "xlsx" and not args.output:
        raise SystemExit("sunlight: --format xlsx needs --output FILE.xlsx")
    if args.output:
        writable_path(Path(args.output), "--output")
    try:
        month = parse_month(args.month)
        rulebook_text, rulebook = rulebook_file(Path(args.rulebook) if args.rulebook else settings.rulebook)
        catalog = catalog_for(args, settings, "scores count the catalog's items and published fields")
        catalog_sha256 = digest(Path(args.catalog or settings.catalog).read_bytes())  # beside the catalog just read
        tz = ZoneInfo(catalog.timezone)
        start, end = month_bounds(month, tz)
        now = datetime.now(tz)
        if start > now:  # stored, it would be the dashboard's latest version of a month with nothing in it
            raise ScoringError(f"month {month} has not begun (it is {now:%Y-%m-%d %H:%M} in {catalog.timezone}): "
                               f"nothing to score yet")
        inputs, inputs_text = None, b""
        if args.inputs:
            inputs_text = file_bytes(Path(args.inputs), "inputs", ScoringError)
            inputs = load_inputs(yaml_of(inputs_text, args.inputs, "inputs", ScoringError), catalog, month)
            check_inputs_scored(inputs, catalog, rulebook)
        if args.by not in rulebook.attachments:
            raise ScoringError(f"the rulebook has no {args.by} attachment")
        unknown_city = city_region_unknown(catalog, rulebook)
        if unknown_city:
            print(f"note: {unknown_city}", file=sys.stderr)
        for warning in rulebook.inconsistencies(args.by):
            print(f"note: {warning} (as the rules are written; a city may correct it with --rulebook)",
                  file=sys.stderr)
        if end > now:
            print(f"note: month {month} is not over: its scores count what the store holds until now",
                  file=sys.stderr)
        require_store(settings)  # a month scored over an empty store: every department unranked
        with _output_file(args.output) as output, open_store(settings) as client:
            facts = dataclasses.replace(month_facts(client, month, tz, case_events_topic=settings.case_events_topic),
                                        as_of=now)
            scores = score_month(rulebook, args.by, catalog, facts, inputs)
            data = _score_data(args.format, scores, to_file=output is not None)
            version = write_scores(client, scores, digest(rulebook_text), digest(inputs_text),
                                   catalog_sha256=catalog_sha256)
            if output is not None:
                output.truncate(0)
                output.write(data)
    except ScoringError as exc:
        raise SystemExit(f"sunlight: {exc}") from None
    if not args.inputs:
        print("note: no --inputs: spot checks m, unapplied changes p and complaints taken as 0, "
              "coverage not supplied", file=sys.stderr)
    if not args.output:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    print(f"scores of {month} by {args.by}: {len(scores.ranked)} ranked, {len(scores.unranked)} without cases "
          f"(listed separately); stored as version {version}, under the catalog of SHA-256 {catalog_sha256[:12]}…",
          file=sys.stderr)
    return 0


def _score_data(output_format: str, scores, to_file: bool) -> bytes:
    """The month's scores in the format asked for (CSV written to a file carries a BOM for Excel)."""
    from alerts import scoring_report

    if output_format == "jsonl":
        return b"".join(orjson.dumps(r, default=str) + b"\n" for r in scoring_report.jsonl_records(scores))
    if output_format == "csv":
        return scoring_report.csv_text(scores).encode("utf-8-sig" if to_file else "utf-8")
    if output_format == "xlsx":
        return scoring_report.xlsx_bytes(scores)
    return scoring_report.table_text(scores).encode("utf-8")


@contextmanager
def _output_file(path: str | None):
    """The file a command's output goes to (None: standard output), opened before the command
    stores anything: one that cannot be written (`/proc/x`, a read-only place) ends the command
    with nothing stored. Left out (removed) when the command fails after opening it."""
    if not path:
        yield None
        return
    existed = Path(path).exists()
    try:
        file = open(path, "ab")  # not truncated until it is written: a failed command leaves it as it was
    except OSError as exc:
        raise SystemExit(f"sunlight: --output {path}: cannot be written: {exc.strerror or exc}") from None
    try:
        with file:
            yield file
    except BaseException:
        if not existed:
            Path(path).unlink(missing_ok=True)
        raise
