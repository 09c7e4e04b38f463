"""`sunlight import`: an event log mapped, its rejects written, and pushed through the pipeline
(or only published)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from streams.commands.common import parse_now, push_events, notify_settings, writable_path, CONFLICTING_NOTE, catalog_if_any, catalog_path_for
from streams.settings import Settings


def _write_rejects(rejects: Path, source: Path, result) -> None:
    with open(rejects, "wb") as handle:
        for row in (*result.rejected, *result.held):
            handle.write(orjson.dumps({"file": str(source), "row": row.number,
                                       **({"line": row.line} if row.line is not None else {}),
                                       "status": row.status.value,
                                       "case_id": row.case_id, "reason": row.reason,
                                       **({"closing": True} if row.derived else {})}) + b"\n")


def cmd_import(args, settings: Settings) -> int:
    """Import a log: map it, write rejects, and push it through the pipeline (or only publish it)."""
    from alerts.mapping import load_mapping
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from streams.catalog_source import read_yaml
    from streams.broker import event_messages
    from streams.clock import wall_now
    from streams.importers import (convert, hold_cases_left_open, import_letters, mark_replaced, open_import_letters,
                                   refused_letters_waiting, released_rows, replaced_letters, whose_events_are_stored)

    settings = notify_settings(settings, args)
    source = Path(args.file)
    catalog = None if settings.kafka else catalog_path_for(args, settings, "import on the embedded defaults runs "
                                                                          "the pipeline and needs a catalog")
    rejects = writable_path(Path(args.rejects or f"{source.name}.rejects.jsonl"), "--rejects")
    mapping = load_mapping(read_yaml(Path(args.mapping), "mapping")) if args.mapping else None
    result = convert(source, mapping)
    known = catalog_if_any(catalog or args.catalog or settings.catalog)
    if mapping is not None and known is not None:
        _refuse_what_the_catalog_contradicts(mapping, known, result)
    # What earlier imports left open (rows rejected or held): this import replaces them, or holds
    # back the rest of those cases too. Read where the store can be read from here.
    left, replaced, waiting, released, freed = [], [], [], [], []
    if not settings.kafka or not settings.embedded_store:
        client = connect(settings.clickhouse, settings.data_dir)
        try:
            migrate(client)
            left = open_import_letters(client)
            waiting = refused_letters_waiting(client, result)
        finally:
            client.close()
        replaced = replaced_letters(left, source, result, mapping)
        released, freed = released_rows(result, left, replaced)  # (their letters join `replaced`)
        hold_cases_left_open(result, left, replaced)
    if not (result.rejected or result.held):  # no file of nothing (an earlier run's would be stale: it goes)
        if rejects.is_file():  # never a device (`--rejects /dev/null`, found by a review)
            rejects.unlink()
    else:
        _write_rejects(rejects, source, result)
    messages = event_messages(result.events + released)
    if settings.kafka:
        from streams.runtime import produce

        letters = import_letters(result, source, settings.case_events_topic, known)
        asyncio.run(produce(settings.kafka, settings.case_events_topic, messages))
        kept = _keep_import_letters(settings, letters)
        processed = None
    else:
        letters = import_letters(result, source, settings.case_events_topic, known)
        processed = asyncio.run(push_events(settings, messages, catalog, parse_now(args.now),
                                      show_progress=sys.stderr.isatty(), letters=letters))
        kept = f"kept as dead letters in {settings.dlq_topic} and the store: sunlight dlq list"
    settled = refused = 0
    several: dict[str, list[str]] = {}
    if processed is not None:  # its events are stored: the letters they replace are done
        from sinks.queries import cases_of_several_items

        client = connect(settings.clickhouse, settings.data_dir)
        try:
            settled = mark_replaced(client, replaced, wall_now()) if replaced else 0
            refused = mark_replaced(client, whose_events_are_stored(client, waiting), wall_now())
            several = cases_of_several_items(client, (event["case_id"] for event in result.events))
        finally:
            client.close()
    print(_import_summary(source, result, mapping, processed, settings.case_events_topic, settings.dlq_topic,
                          len(released)), file=sys.stderr)
    if result.rejected or result.held:
        print(f"  rows not imported, with why: {rejects}; {kept}", file=sys.stderr)
    caseless = caseless_rows(result)
    if caseless:
        print(caseless, file=sys.stderr)
    if several:
        print(several_items_note(several), file=sys.stderr)
    if settled > len(freed):
        print(f"  {settled - len(freed)} dead letters an earlier import of {source.name} left are replaced (marked "
              f"redriven)", file=sys.stderr)
    if freed and processed is not None:
        print(f"  {len(freed)} rows earlier imports held back came in with their cases, whose rejected rows are "
              f"in now (their dead letters marked redriven)", file=sys.stderr)
    if refused:
        print(f"  {refused} dead letters of these events, refused by the pipeline before, are replaced (marked "
              f"redriven): the events are stored now", file=sys.stderr)
    if processed is not None:  # the pipeline ran here: what it did not send, or could not
        from streams.commands.pipeline import say_failed_notices

        say_failed_notices(settings)
    if (processed is not None and result.events and not processed["new"] and not processed["duplicates"]
            and processed["dead_lettered"]):
        why = ("the store holds each under its id with other content (above)"
               if processed.get("conflicting") == processed["dead_lettered"] else
               "an item code, node or department the catalog does not have is the usual reason")
        print(f"sunlight: no event of {source.name} was taken: the pipeline refused every one (see "
              f"{settings.dlq_topic}: sunlight dlq list); {why}", file=sys.stderr)
        return 1
    if (result.rejected or result.held) and not result.events:
        first = (result.rejected or result.held)[0]
        print(f"sunlight: no row of {source.name} could be imported; the first reason: {first.reason}"
              + (". Once the file is corrected, import it again under the same name: it replaces these rows' "
                 "dead letters" if result.rejected else ""), file=sys.stderr)
        return 1
    return 0


def several_items_note(several: dict[str, list[str]]) -> str:
    """What the summary says of the import's cases whose stored events name two items or more: two
    sources that use one case id (before, nothing: their cards were lost or filed under the other
    item's department without a word; found by a black-box test)."""
    shown = "; ".join(f"{case_id}: {', '.join(items)}" for case_id, items in sorted(several.items())[:3])
    return (f"  warning: {len(several)} case(s) of this import hold events of more than one item ({shown}"
            f"{'; ...' if len(several) > 3 else ''}): a case id must name one case across every source. Each is "
            f"judged under the item most of its events name, the others' events set aside: they raise no card "
            f"other than a late registration (`sunlight cases show CASE` says which). If two sources share case "
            f"ids, make one source's ids its own (a prefix in its export) and import both into a fresh store")


def caseless_rows(result) -> str | None:
    """What the summary says of rejected rows that name no case: the case each belongs to could not
    be held back, and is judged without it (a missing acceptance reads as a skipped node: a false
    red card). Before, the summary said "1 rejected" and nothing of that (found by a black-box test)."""
    caseless = [row for row in result.rejected if not (row.case_id or "").strip()]
    if not caseless:
        return None
    shown = ", ".join(row.where for row in caseless[:5]) + (", ..." if len(caseless) > 5 else "")
    rows = "1 rejected row names" if len(caseless) == 1 else f"{len(caseless)} rejected rows name"
    return (f"  warning: {rows} no case ({shown}): the cases they belong to could not be held back, and are "
            f"judged without them (a missing step reads as skipped). Correct those rows and import the file "
            f"again")


def _refuse_what_the_catalog_contradicts(mapping, catalog, result) -> None:
    """Refuse, before anything is sent, a mapping and catalog that would accuse every case of
    skipping a node (`alerts.mapping.nodes_left_undone`), or whose events would name nodes the
    item has under other ids (`nodes_named_otherwise`), for the items the log's rows name."""
    from alerts.mapping import MappingError, nodes_left_undone, nodes_named_otherwise

    events = [row.event for row in result.held if row.event] + result.events
    why = []
    for code in sorted({event["item_code"] for event in events}):
        item = catalog.items.get(code)
        if item is not None:
            why += nodes_left_undone(mapping, item)
            named = {event["node"] for event in events if event["item_code"] == code and event.get("node")}
            why += filter(None, [nodes_named_otherwise(mapping, item, named)])
    if why:
        raise MappingError(f"mapping and catalog disagree, nothing was imported: {why[0]}"
                           + "".join(f". Also: {reason}" for reason in why[1:]) + ".")


SKIP_REASONS_SHOWN = 8  # the most frequent reasons rows were skipped for, named in an import's summary


def _import_summary(source: Path, result, mapping, processed: dict | None, topic: str, dlq_topic: str,
                    released: int = 0) -> str:
    """What an import did, in counts that add up: the rows read are the steps imported, the rows
    rejected, held back, skipped and repeated; the events are those steps, the closings made
    from a case-level end column and the rows earlier imports held back that came in with their
    cases (`released`), each new, already stored or refused by the pipeline."""
    skipped = sum(result.skipped.values())
    reasons = sorted(result.skipped.items(), key=lambda item: (-item[1], item[0]))
    why = "; ".join(f"{n} {reason.removeprefix('skipped: ')}" for reason, n in reasons[:SKIP_REASONS_SHOWN])
    if len(reasons) > SKIP_REASONS_SHOWN:
        rest = reasons[SKIP_REASONS_SHOWN:]
        why += f"; {sum(n for _, n in rest)} for {len(rest)} other reasons"
    lines = [f"{source.name}: {result.rows} rows read: {result.rows_imported} steps, {result.rows_rejected} rejected, "
             f"{result.rows_held} held back with them (the rest of their cases), {skipped} skipped"
             + (f" ({why})" if why else "") + f", {result.duplicated_in_file} repeated in the file"]
    if result.absent:
        names = ", ".join(repr(c) for c in sorted(result.absent))
        lines.append(f"  warning: no event of the log has {names}, which the mapping reads (a case's end, a fine's "
                     f"amount, ...): read as absent from every row; if the name is misspelt, correct the mapping "
                     f"and import the file into a fresh store")
    for column, at, n, values in result.dates.dates_like():
        lines.append(f"  warning: {n} of the {values} cases' values of {column} (date_only) are written at {at}, "
                     f"one time of day, and read as moments, not dates (a date read so ends its case or deadline "
                     f"at {at}, not at 24:00): if they are dates, add \"{at}\" to the mapping's dates_written_at "
                     f"and import the file into a fresh store")
    repeated = result.repeated_steps  # counted over every event: once
    if repeated:
        many = repeated > 1
        lines.append(f"  {repeated} row{'s' if many else ''} repeat{'' if many else 's'} the case, "
                     f"step and time of an earlier row: each is "
                     f"imported as a step of its own (a row exported twice is a step done twice; remove the "
                     f"copies and import the file into a fresh store)")
    events = f"  {len(result.events) + released} events"
    parts = [f"{result.rows_imported} steps"] * bool(result.closings or released)
    if result.closings:
        parts.append(f"{result.closings} closings from {mapping.case_end}")
    if released:
        parts.append(f"{released} rows earlier imports held back")
    if parts:
        events += f" ({' and '.join(parts)})"
    if processed is None:
        lines.append(f"{events}: published to {topic}, for the workers")
    else:
        lines.append(f"{events}: {processed['new']} imported, {processed['duplicates']} already stored, "
                     f"{processed['dead_lettered']} refused by the pipeline (see {dlq_topic})")
        if processed.get("conflicting"):
            lines.append(CONFLICTING_NOTE.format(n=processed["conflicting"], what="import"))
    return "\n".join(lines)


def _keep_import_letters(settings: Settings, letters: list) -> str:
    """An import that only publishes (SUNLIGHT_KAFKA): its letters to the dead-letter topic, and
    into the store when it is a ClickHouse server (an embedded store belongs to its worker)."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from streams.runtime import keep_letters

    if not letters:
        return ""
    client = None if settings.embedded_store else connect(settings.clickhouse, settings.data_dir)
    try:
        if client is not None:
            migrate(client)
        asyncio.run(keep_letters(settings, settings.kafka, letters, client=client))
    finally:
        if client is not None:
            client.close()
    if settings.embedded_store:
        return f"sent as dead letters to {settings.dlq_topic}"
    return f"kept as dead letters in {settings.dlq_topic} and the store: sunlight dlq list"
