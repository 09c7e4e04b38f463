"""Reading foreign event logs (contract JSON lines, CSV, XES) and importing them through the pipeline.

File reading lives here; turning a row into a contract event is `alerts.mapping` (pure).
"""

from __future__ import annotations

import csv
import gzip
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

from alerts.catalog import Catalog
from alerts.events import InvalidEvent, parse_event
from alerts.letters import UTF8_BOM, DeadLetter, make_letter, refused_event
from alerts.mapping import (RAGGED, DateTally, LogMapping, MappedRow, RowStatus, hold_broken_cases, map_rows,
                            other_fact_under_id)
from streams.replay_feed import json_lines
from streams.steps import MAX_SENT_BYTES


class LogFormatError(ValueError):
    pass


def read_csv(path: Path, columns: set[str] = frozenset(), lines: dict[int, int] | None = None
             ) -> Iterator[dict[str, str]]:
    """The rows of a CSV file (UTF-8, a BOM ignored, comma-separated, with a header row that holds
    every one of `columns`, the columns a mapping reads). `lines` gets the line each row begins at,
    by its number (1: the first row after the header), as it is read: blank lines and fields quoted
    across lines make the two differ, and a person looks a row up by its line."""
    # A field may be as large as an event sent may be: the csv module's own limit (131,072 characters)
    # refused a whole file for one oversized cell, which the mapping rejects as its row alone (found
    # by a black-box test).
    csv.field_size_limit(max(csv.field_size_limit(), MAX_SENT_BYTES))
    opened = gzip.open(path, "rt", newline="", encoding="utf-8-sig") if path.name.lower().endswith(".gz") \
        else open(path, newline="", encoding="utf-8-sig")  # `.csv.gz`, decompressed as it is read
    with opened as handle:
        # Strict: a stray quote opening a field that no quote closes is an error, not the rest of
        # the file read as one field (the rows after it were dropped without a word: found by a
        # black-box test).
        reader = csv.DictReader(handle, strict=True)
        try:
            header = reader.fieldnames
            if not header:
                raise LogFormatError(f"{path}: no header row")
            missing = sorted(columns - set(header))
            if missing:
                raise LogFormatError(_missing_columns(path, missing, header))
            twice = sorted({c for c in header if header.count(c) > 1 and c in columns})
            if twice:  # the last copy was read, whatever the first held (found by a black-box test)
                raise LogFormatError(f"{path}: the header names column{'s' if len(twice) > 1 else ''} "
                                     f"{', '.join(repr(c) for c in twice)} more than once; the mapping reads "
                                     f"{'them' if len(twice) > 1 else 'it'}: keep one")
            for number, row in enumerate(reader, start=1):
                extra = row.pop(None, None)
                if lines is not None:  # the reader is at the row's last line: less the breaks inside its fields
                    lines[number] = reader.line_num - sum(_line_breaks(value)
                                                          for value in (*row.values(), *(extra or ())))
                # Rejected as its row (`alerts.mapping.RAGGED`): more fields than the header, or fewer
                # than the columns the mapping reads (a row that leaves out a trailing column nobody
                # reads, or a header's trailing empty names, is read as it is: found by a black-box test).
                short = [c for c in columns if row.get(c, "") is None]
                if extra is not None or short:
                    row[RAGGED] = (f"{len(extra)} more field{'s' if len(extra) > 1 else ''} than the header's "
                                   f"{len(header)}" if extra is not None else
                                   f"fewer fields than the header's {len(header)}, without "
                                   f"{', '.join(repr(c) for c in sorted(short))}") + \
                        " (a comma inside a field that is not quoted?)"
                yield row
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):  # (more than an event may hold: no quote is at fault)
                raise LogFormatError(f"{path}, line {reader.line_num + 1}: a field of more than "
                                     f"{csv.field_size_limit():,} characters, more than an event may hold") from None
            raise LogFormatError(f"{path}, line {reader.line_num}: {exc} (a quote \" that opens a field no quote "
                                 f"closes reads the lines after it as one field: check the quotes before this "
                                 f"line)") from None
        except UnicodeDecodeError as exc:
            raise LogFormatError(f"{path}: not UTF-8 text ({exc.reason}, {_where_not_utf8(path)}); save the "
                                 f"file as UTF-8 (Excel: 'CSV UTF-8'; {_how_to_convert(path)})") from None


def _how_to_convert(path: Path) -> str:
    """How to make UTF-8 of a file that is not: UTF-16 when it starts with that byte-order mark
    (Excel's 'Unicode Text'; it was told GBK: found by a black-box test), else GBK, as a file from a
    Chinese system often is."""
    try:
        with open(path, "rb") as file:
            start = file.read(2)
    except OSError:
        start = b""
    if start in (b"\xff\xfe", b"\xfe\xff"):
        return "it is UTF-16, Excel's 'Unicode Text': iconv -f UTF-16 -t UTF-8"
    return "a file from a Chinese system is often GBK: iconv -f GBK -t UTF-8"


def _line_breaks(value: str | None) -> int:
    """How many lines a field read from a CSV file ends (a quoted field may span lines)."""
    return 0 if not value else value.count("\n") + value.count("\r") - value.count("\r\n")


def _missing_columns(path: Path, missing: list[str], header: list[str]) -> str:
    text = (f"{path}: the mapping reads column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}, which the header does not have; the header is "
            f"{', '.join(repr(c) for c in header)}")
    if header and header[0].lstrip().startswith(("<?xml", "<log")):
        text += "; the file is XML (an XES log, say), which the mapping reads as CSV: set 'format: xes' in the mapping"
    elif len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        text += "; the file looks separated by something else than commas: save it comma-separated"
    elif any(c != c.strip() for c in header):
        text += "; some header names have spaces around them"
    return text


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _open_log(path: Path):
    """A log file opened for reading bytes; a `.gz` one decompressed (an XES log is often kept as
    `.xes.gz`: read as it is, it was refused as text in another encoding)."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _log_bytes(path: Path) -> bytes:
    with _open_log(path) as handle:
        return handle.read()


# XES attribute elements that hold other attributes, not a value of their own.
_XES_COLLECTIONS = frozenset({"list", "container"})


def _xes_value(tag: str, value: str | None) -> str | None:
    """An XES attribute's value as a row holds it. A float that is not a number (PM4Py writes a
    missing value of a numeric column as `<float value="nan">`) is no value; a whole float
    (`558.0`: PM4Py writes an integer column with gaps as floats) is written as the whole number,
    so that an officer or an article number reads as the source wrote it. PM4Py writes a missing
    date as the string `NaT` (pandas' missing time): no value either (before, the open cases' rows
    were rejected for it, 105 of the receipt log's cases, its overdue ones among them, found by a
    black-box test)."""
    if value == "NaT" and tag in ("string", "date"):
        return None
    if tag != "float" or value is None:
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if math.isnan(number):
        return None
    if math.isfinite(number) and number == int(number) and abs(number) < 2 ** 53:
        return str(int(number))
    return value


def read_xes(path: Path, columns: set[str] = frozenset(), optional: set[str] = frozenset(),
             absent: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """Events of an XES (IEEE 1849) log as flat rows; trace attributes (the trace's own, not those
    nested in another attribute) prefixed with 'case:'. Each of `columns` (the attributes every
    row needs) must be in the log somewhere: one the log never has is refused once it is read. Of
    `optional` (those a mapping reads where a row has them: a case's end, a fine's amount), those
    no event has and the log does not declare (`<global>`, an XES log's header) are put in
    `absent`: an export of open cases has no end date, but a misspelt `case_end` gave every case no
    closing, and false overdue cards, without a word."""
    trace: dict[str, Any] = {}
    parents: list[str] = []  # the tags of the elements open around the one read
    seen: set[str] = set()
    declared: set[str] = set()  # the attributes the log's <global> elements declare
    scope = "event"
    try:
        with _open_log(path) as handle:
            for action, element in ET.iterparse(handle, events=("start", "end")):
                tag = _local(element.tag)
                if action == "start":
                    if tag == "trace":
                        trace = {}
                    elif tag == "global":
                        scope = element.get("scope", "event")
                    parents.append(tag)
                    continue
                parents.pop()
                if parents and parents[-1] == "global" and element.get("key") is not None:
                    declared.add(f"case:{element.get('key')}" if scope == "trace" else element.get("key"))
                    continue
                if tag == "event":
                    row = dict(trace)
                    for child in element:
                        key, kind = child.get("key"), _local(child.tag)
                        if key is not None and kind not in _XES_COLLECTIONS:
                            value = _xes_value(kind, child.get("value"))
                            if value is not None:
                                row[key] = value
                    element.clear()
                    seen.update(row)
                    yield row
                elif tag == "trace":
                    element.clear()
                    # An event after it outside any trace (IEEE 1849 allows events under <log>) is of
                    # no case: read with this one's attributes, it became a step of this case (false
                    # skipped_node cards: found by a black-box test).
                    trace = {}
                elif (parents and parents[-1] == "trace" and element.get("key") is not None
                      and tag not in _XES_COLLECTIONS):
                    value = _xes_value(tag, element.get("value"))
                    if value is not None:
                        trace[f"case:{element.get('key')}"] = value
    except ET.ParseError as exc:
        where = _where_not_utf8(path)
        hint = (f"; it is not UTF-8 text ({where}): save it as UTF-8 (from a Chinese system, often GBK: "
                f"iconv -f GBK -t UTF-8)") if where != "somewhere in the file" else ""
        raise LogFormatError(f"{path}: not well-formed XES: {exc}{hint}") from None
    except (OSError, EOFError) as exc:
        if not path.name.lower().endswith(".gz"):
            raise
        raise LogFormatError(f"{path}: cannot be read as gzip ({exc})") from None  # not gzip, or cut short
    except ValueError as exc:  # an encoding the XML parser cannot read ("multi-byte encodings are not supported")
        raise LogFormatError(f"{path}: XES in an encoding that cannot be read ({exc}): save it as UTF-8 (from a "
                             f"Chinese system, often GBK: iconv -f GBK -t UTF-8, and the declaration "
                             f"encoding=\"UTF-8\")") from None
    missing = sorted(columns - seen)
    if missing:
        raise LogFormatError(_missing_attributes(path, missing, seen))
    if absent is not None:
        absent.update(optional - seen - declared)


def _missing_attributes(path: Path, missing: list[str], seen: set[str]) -> str:
    trace = sorted(key for key in seen if key.startswith("case:"))
    event = sorted(key for key in seen if not key.startswith("case:"))
    return (f"{path}: the mapping reads attribute{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}, which no event of the log has (a trace's own attributes "
            f"are read as case:KEY); its traces have {', '.join(repr(k) for k in trace) or 'none'}, its events "
            f"{', '.join(repr(k) for k in event) or 'none'}")


@dataclass
class ImportResult:
    rows: int = 0
    events: list[dict] = field(default_factory=list)
    rejected: list[MappedRow] = field(default_factory=list)  # rows that cannot be read
    held: list[MappedRow] = field(default_factory=list)  # rows of a case with a rejected row
    skipped: Counter = field(default_factory=Counter)  # reason -> rows that are not steps
    duplicated_in_file: int = 0
    raw_lines: dict[int, bytes] = field(default_factory=dict)  # a rejected JSON line as read
    # (case, event id) -> its row, and whether derived (an id is its case's: `other_fact_under_id`)
    numbers: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    activities: set[tuple[str, str]] = field(default_factory=set)  # (case, activity as written) of rows imported
    absent: set[str] = field(default_factory=set)  # XES attributes the mapping reads that no event has
    dates: DateTally = field(default_factory=DateTally)  # the date-only values' times of day

    def hold(self, cases: dict[str, str]) -> None:
        """Hold back the events of these cases (case -> why), as rows of a case with a rejected row are."""
        kept = []
        for event in self.events:
            why = cases.get(event["case_id"])
            if why is None:
                kept.append(event)
                continue
            number, derived = self.numbers[_key(event)]
            self.held.append(MappedRow(number, RowStatus.HELD, event, reason=why, case_id=event["case_id"],
                                       derived=derived))
        self.events = kept

    @property
    def repeated_steps(self) -> int:
        """Imported rows that repeat the case, step and time of an earlier row (each is a step)."""
        seen = Counter((e["case_id"], e["type"], e.get("node"), datetime.fromisoformat(e["occurred_at"]))
                       for e in self.events if not self.numbers[_key(e)][1])  # (one moment, in any offset)
        return sum(n - 1 for n in seen.values())

    @property
    def closings(self) -> int:
        """Of the events, closings made from a case-level end column (no row of their own)."""
        return sum(self.numbers[_key(event)][1] for event in self.events)

    @property
    def rows_of_cases(self) -> set[tuple[str, int]]:
        """(case, row number) of each imported row."""
        return {(event["case_id"], self.numbers[_key(event)][0]) for event in self.events
                if not self.numbers[_key(event)][1]}

    @property
    def rows_imported(self) -> int:
        return len(self.events) - self.closings

    @property
    def rows_rejected(self) -> int:
        return len({row.number for row in self.rejected if not row.derived})

    @property
    def rows_held(self) -> int:
        return sum(not row.derived for row in self.held)


def _key(event: dict) -> tuple[str, str]:
    """An event's key: its case and its id, which names one fact of its case (the store's key)."""
    return event["case_id"], event["event_id"]


def _where_not_utf8(path: Path) -> str:
    """Where a file's first byte that is not UTF-8 is (the reader decodes in chunks, so its own
    line count is where the chunk began, not where the byte is)."""
    try:
        data = _log_bytes(Path(path))
    except (OSError, EOFError):
        return "somewhere in the file"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return f"line {line}, byte {column} of the line: 0x{data[exc.start]:02x}"
    return "somewhere in the file"


def _refuse_gzip_not_named_so(path: Path) -> None:
    """A compressed log not named `.gz` is said to be so: it was refused as text in another encoding,
    with advice to convert it from GBK (found by a black-box test)."""
    if path.name.lower().endswith(".gz"):
        return
    try:
        with open(path, "rb") as handle:
            start = handle.read(2)
    except OSError:
        return  # said where the file is read
    if start == b"\x1f\x8b":
        raise LogFormatError(f"{path}: is gzip-compressed (it begins with gzip's bytes): name it {path.name}.gz, "
                             f"which is decompressed as it is read, or decompress it (gunzip)")


def convert(path: Path, mapping: LogMapping | None) -> ImportResult:
    """Read a log and map it to contract events; rejects carry the row number and the reason."""
    result = ImportResult()
    _refuse_gzip_not_named_so(path)
    if mapping is None and path.name.lower().endswith((".csv", ".xes", ".xes.gz", ".csv.gz")):
        raise LogFormatError(f"{path}: a {'CSV' if path.name.lower().endswith('.csv') else 'XES'} log needs "
                             f"--mapping FILE, which says which columns are the case, the activity and the time "
                             f"(docs/importing.md); without one, a file is read as JSON lines of contract events")
    if mapping is None or mapping.format == "jsonl":
        rows = hold_broken_cases(list(_jsonl_events(path, result)))
    else:
        required = mapping.required_columns()
        lines: dict[int, int] = {}
        rows = map_rows(read_csv(path, mapping.columns(), lines) if mapping.format == "csv"
                        else read_xes(path, required, mapping.columns() - required, result.absent), mapping, lines,
                        result.dates)
    seen: set[tuple[str, str]] = set()  # an id is its case's: the same id in another case is another event
    numbers: set[int] = set()  # a JSON line's number is its line's, blank lines not counted among the rows
    for mapped in rows:
        numbers.add(mapped.number)
        if mapped.status is RowStatus.SKIPPED:
            result.skipped[mapped.reason] += 1
        elif mapped.status is RowStatus.REJECTED:
            result.rejected.append(mapped)
        elif mapped.status is RowStatus.HELD:
            result.held.append(mapped)
        elif _key(mapped.event) in seen:
            result.duplicated_in_file += 1
        else:
            seen.add(_key(mapped.event))
            result.events.append(mapped.event)
            result.numbers[_key(mapped.event)] = (mapped.number, mapped.derived)
            if mapped.activity:
                result.activities.add((mapped.event["case_id"], mapped.activity))
    result.rows = len(numbers)
    if mapping is not None:
        _refuse_absent_case_columns(path, mapping, result.absent)
    return result


def _refuse_absent_case_columns(path: Path, mapping: LogMapping, absent: set[str]) -> None:
    """A case-level column (the end, the acceptance's attributes) that no event of an XES log has
    refuses the file: misspelt, it left every case open (a false red overdue card each: 1,432 for
    the receipt log's 411); an export of open cases only has no end date, and its mapping leaves
    `case_end` out. Checked before anything is sent, unlike the summary's warning."""
    columns = {mapping.case_end, *mapping.accept_attrs.values()} & absent
    if columns:
        names = ", ".join(repr(c) for c in sorted(c for c in columns if c))
        raise LogFormatError(f"{path}: no event of the log has {names}, which the mapping reads for each case (its "
                             f"end, or what its acceptance states): if the name is misspelt, correct it; if the "
                             f"log has no such attribute (an export of open cases), leave it out of the mapping")


# The reasons of an import's dead letters.
UNREADABLE_ROW = "unreadable_row"
CASE_INCOMPLETE = "case_incomplete"
# An import's letter did not come from a partition of the topic: its offset is the row's number.
IMPORT_PARTITION = -1


def import_letters(result: ImportResult, source: Path, topic: str, catalog: Catalog | None) -> list[DeadLetter]:
    """The dead letters of an import, one per row it could not take, as the pipeline keeps the
    messages it refuses (`sunlight dlq list`, the monthly data-exchange score): a rejected row
    (`unreadable_row`) with what it says of its case and the row as read, a held one
    (`case_incomplete`) with its event, which `sunlight dlq redrive` can send once its case's
    rejected row is corrected. The topic is the one the rows were for; the partition is -1 and
    the offset the row's number. The same file imported again gives the same letters."""
    letters = []
    for mapped in result.rejected:
        raw = result.raw_lines.get(mapped.number) or orjson.dumps(
            {**mapped.labels, "row": mapped.number, "columns": mapped.columns or {}}, default=str)
        letters.append(make_letter(topic, IMPORT_PARTITION, mapped.number, mapped.case_id, raw, UNREADABLE_ROW,
                                   f"{source.name}, {mapped.where}: {mapped.reason}", catalog))
    for mapped in result.held:
        letters.append(make_letter(topic, IMPORT_PARTITION, mapped.number, mapped.case_id, orjson.dumps(mapped.event),
                                   CASE_INCOMPLETE, f"{source.name}, {mapped.where}: {mapped.reason}", catalog))
    return letters


def whole_cases(result: ImportResult) -> set[str]:
    """The cases an import brought in whole: none of their rows rejected or held."""
    broken = {row.case_id for row in (*result.rejected, *result.held)}
    return {event["case_id"] for event in result.events} - broken


def replaced_letters(letters: list[dict], source: Path, result: ImportResult,
                     mapping: LogMapping | None = None) -> list[dict]:
    """Of the open letters an earlier import of a file of this name left (by their detail), those
    this import replaces: a held row's whose event it brought in; a rejected row's whose case it
    brought in whole, with that row back (`_row_back`), once every held row of that case is brought
    in too. Another file that only shares the name (next month's export) replaces none of a case
    it does not bring in again."""
    prefix = f"{source.name}, row "
    mine = [letter for letter in letters
            if letter["partition"] == IMPORT_PARTITION and (letter["detail"] or "").startswith(prefix)]
    events = {_key(event) for event in result.events}
    whole, rows = whole_cases(result), result.rows_of_cases
    held = [letter for letter in mine if letter["reason"] == CASE_INCOMPLETE]
    replaced = [letter for letter in held if _key(letter) in events]
    # Not a row held back for an earlier import's letters: the file's rows, or another's of the same
    # name (monthly exports all called export.csv), that `released_rows` brings in (counted as this
    # file's rows still missing, they kept the rejected row's letter open for good: found by review).
    waiting = {letter["case_id"] for letter in held
               if _key(letter) not in events and not _held_for_an_earlier_import(letter)}
    replaced += [letter for letter in mine if letter["reason"] == UNREADABLE_ROW and letter["case_id"] in whole
                 and letter["case_id"] not in waiting and _row_back(letter, result, rows, events, mapping)]
    return replaced


def _row_back(letter: dict, result: ImportResult, rows: set[tuple[str, int]], events: set[tuple[str, str]],
              mapping: LogMapping | None) -> bool:
    """Whether this import brings back the row a rejected row's letter stands for. A row with an
    activity the mapping reads (rejected for its time or another value): a row of its case with that
    activity (the file exported again in another order, where the same number was another case's
    row: the case stayed held back for good, its cards lost, found by a black-box test). A JSON
    line that names its event: that event. Otherwise (the activity itself unreadable): a row of
    its case at the same number, the file corrected in place."""
    same_number = (letter["case_id"], letter["offset"]) in rows  # `ImportResult.rows_of_cases`
    try:
        payload = orjson.loads(letter["payload"])
    except (orjson.JSONDecodeError, TypeError):
        return same_number
    if not isinstance(payload, dict):
        return same_number
    if mapping is None or mapping.format == "jsonl":
        named = payload.get("event_id")  # corrected in place, a line may come back under another id
        return same_number or (isinstance(named, str) and (letter["case_id"], named) in events)
    activity = (payload.get("columns") or {}).get(mapping.activity)
    activity = activity.strip() if isinstance(activity, str) else ""
    if activity and (activity in mapping.activities or mapping.unmapped == "node"):
        return (letter["case_id"], activity) in result.activities
    return same_number


def refused_letters_waiting(client, result: ImportResult) -> list[dict]:
    """The pipeline's open letters of events this import brings in, read before it does: a file
    imported again with its mapping or catalog corrected brings them in under their ids (before,
    the 9,906 unknown_item letters of the first import stayed open, charged to the department's
    data-exchange score, though every event was stored: found by a black-box test). A
    conflicting_duplicate's event is stored with the content it was refused against: its letter
    stays. Read before, as the pipeline marks those whose events it stores
    (`sinks.writer.mark_letters_corrected`), so that the import can say how many it replaced."""
    from sinks.queries import dead_letters
    from sinks.scope import Scope

    keys = {_key(event) for event in result.events}
    return [letter for letter in dead_letters(client, Scope.everything())
            if letter["partition"] != IMPORT_PARTITION and letter["reason"] != "conflicting_duplicate"
            and _key(letter) in keys]


def whose_events_are_stored(client, letters: list[dict]) -> list[dict]:
    """Of these letters, those whose events the store holds now."""
    from sinks.queries import stored_event_keys

    stored = stored_event_keys(client, sorted({_key(letter) for letter in letters}))
    return [letter for letter in letters if _key(letter) in stored]


def open_import_letters(client) -> list[dict]:
    """The open letters earlier imports left (rows rejected or held back), from the store."""
    from sinks.queries import dead_letters
    from sinks.scope import Scope

    return [letter for letter in dead_letters(client, Scope.everything())
            if letter["partition"] == IMPORT_PARTITION and letter["reason"] in (UNREADABLE_ROW, CASE_INCOMPLETE)]


def released_rows(result: ImportResult, left: list[dict], replaced: list[dict]) -> tuple[list[dict], list[dict]]:
    """The events of rows earlier imports held back (`case_incomplete` letters, of any file) of a
    case this import brings in whole, once the case lacks nothing else: none of its rejected rows'
    letters left open (this import replaces them, or an operator closed them). They were held only
    for those rows: they come in with this import, and their letters join `replaced`. Before, two
    monthly files of one case, a row of the first rejected, held each other back for good: the
    corrected first file was held for the second's held rows, and the second again for the
    first's (a red overdue card lost; found by a black-box test). Returns (the events to send,
    each once and none this import brings itself; the letters released)."""
    done = {letter["letter_id"] for letter in replaced}
    still = [letter for letter in left if letter["letter_id"] not in done]
    events = {_key(event) for event in result.events}
    held: dict[str, list[dict]] = {}
    blocked = set()
    for letter in still:
        if _held_for_an_earlier_import(letter):
            held.setdefault(letter["case_id"], []).append(letter)
        else:  # a rejected row, or one held back with it: the corrected file brings it (`replaced_letters`)
            blocked.add(letter["case_id"])
    out: dict[tuple[str, str], dict] = {}
    letters = []
    for case in whole_cases(result) - blocked:
        latest, superseded = _latest_import_of_each_file(held.get(case, []))
        rows = [(letter, _held_event(letter)) for letter in latest]
        if any(event is None for _, event in rows):  # a payload no event can be read from: left held
            continue
        for letter, event in rows:
            letters.append(letter)
            if _key(event) not in events:
                out.setdefault(_key(event), event)
        letters += superseded
    replaced.extend(letters)
    return list(out.values()), letters


def _latest_import_of_each_file(letters: list[dict]) -> tuple[list[dict], list[dict]]:
    """Of a case's held rows, (those of the latest import of each file, those an import of the same
    file since superseded): a file imported again while its case was held, a row corrected, left
    the first version's letter open beside the new one, and both came in (a stale closing, the
    first end in force, took a true red overdue card down: found by review)."""
    files: dict[str, list[dict]] = {}
    for letter in letters:
        files.setdefault(_file_of(letter), []).append(letter)

    def received(letter: dict) -> datetime:  # (a letter kept again, unchanged, has its latest import's)
        at = letter.get("received_at")
        return datetime.fromisoformat(at) if isinstance(at, str) else at or datetime.min.replace(tzinfo=timezone.utc)

    latest, superseded = [], []
    for rows in files.values():
        newest = max(received(letter) for letter in rows)
        for letter in rows:
            (latest if received(letter) == newest else superseded).append(letter)
    return latest, superseded


def _held_event(letter: dict) -> dict | None:
    """The event a held row's letter keeps (its payload), None when it cannot be read as one of its case."""
    if letter.get("payload_encoding") != "utf-8":
        return None
    try:
        event = orjson.loads(letter["payload"])
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not isinstance(event, dict) or event.get("case_id") != letter["case_id"] or not event.get("event_id"):
        return None
    return event


# What the reason of a row held back for an earlier import's letters says (`hold_cases_left_open`),
# against one held back for a rejected row of its own file.
HELD_FOR_AN_EARLIER_IMPORT = "has rows an earlier import could not take"


def _file_of(letter: dict) -> str:
    """The name of the file an import's letter is of (its detail: `NAME, row N ...`)."""
    return (letter["detail"] or "").split(", row ", 1)[0]


def _held_for_an_earlier_import(letter: dict) -> bool:
    return letter["reason"] == CASE_INCOMPLETE and HELD_FOR_AN_EARLIER_IMPORT in (letter["detail"] or "")


def hold_cases_left_open(result: ImportResult, left: list[dict], replaced: list[dict]) -> dict[str, str]:
    """Hold back this import's rows of a case an earlier import left rows of (open letters) that
    this import does not replace: its steps would come in without those (next month's export of a
    case whose acceptance is still held is accused of skipping it). `replaced` keeps only the
    letters of the cases that come in. Returns case -> why."""
    done = {letter["letter_id"] for letter in replaced}
    waiting: dict[str, dict] = {}
    for letter in left:
        if letter["letter_id"] not in done:
            waiting.setdefault(letter["case_id"], letter)
    cases = {event["case_id"] for event in result.events}
    why = {case: f"held back: case {case} {HELD_FOR_AN_EARLIER_IMPORT} ({letter['detail']}); "
                 f"imported without them the case would be judged on steps it lacks: import the corrected "
                 f"{_file_of(letter)} under that name (it replaces those rows)"
           for case, letter in waiting.items() if case in cases}
    result.hold(why)
    replaced[:] = [letter for letter in replaced if letter["case_id"] not in why]
    return why


def mark_replaced(client, letters: list[dict], at: datetime) -> int:
    """Mark these letters redriven (replaced by the import that brought their rows in)."""
    from sinks.writer import mark_letters_redriven

    mark_letters_redriven(client, [letter["letter_id"] for letter in letters], at)
    return len(letters)


def _jsonl_events(path: Path, result: ImportResult) -> Iterator[MappedRow]:
    """Contract events, one per line; a line that is not one is rejected, and kept as read for its
    dead letter (its case, where the line names one, is held back with it)."""
    facts: dict[tuple[str, str], tuple[int, dict]] = {}  # (case, event id) -> its first line, its event
    with open(path, "rb") as handle:
        for number, line in json_lines(handle):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:  # the file's encoding, not one event: refused whole, as a CSV file is
                raise LogFormatError(f"{path}: not UTF-8 text ({_where_not_utf8(path)}); save the file as UTF-8 "
                                     f"({_how_to_convert(path)})") from None
            try:
                # A byte order mark before a line (exports of Windows tools put together) is read past,
                # as the pipeline reads a record's (`streams.steps.decode_event`): a replay of the same
                # file took the event, and the import refused it (found by a black-box test).
                obj = orjson.loads(line.removeprefix(UTF8_BOM))
                parse_event(obj)
            except (orjson.JSONDecodeError, InvalidEvent) as exc:
                result.raw_lines[number] = bytes(line)
                reason = f"invalid JSON: {exc}" if isinstance(exc, orjson.JSONDecodeError) else str(exc)
                if isinstance(exc, InvalidEvent):
                    named = obj.get("case_id") if isinstance(obj, dict) else None
                else:  # a line that is no JSON but names its case and event (a lone surrogate, say) holds
                    # its case back, as its letter names them (before, the rest of the case was imported
                    # without it: false red skipped_node cards; found by a black-box test)
                    named = (refused_event(bytes(line), "invalid_json") or (None,))[0]
                yield MappedRow(number, RowStatus.REJECTED, reason=reason,
                                case_id=named if isinstance(named, str) and named else None)
                continue
            if isinstance(obj, dict):
                obj.setdefault("channel", "import")
            other = other_fact_under_id(obj, f"line {number}", facts)
            if other:  # sent on, the store kept the first and refused it as a conflicting_duplicate
                result.raw_lines[number] = bytes(line)
                yield MappedRow(number, RowStatus.REJECTED, reason=f"{other}; give each its own event_id",
                                case_id=obj["case_id"])
                continue
            yield MappedRow(number, RowStatus.IMPORTED, obj, case_id=obj.get("case_id"))
