"""Reading foreign event logs (contract JSON lines, CSV, XES) and importing them through the pipeline.

File reading lives here; turning a row into a contract event is `alerts.mapping` (pure).
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from alerts.events import InvalidEvent, parse_event
from alerts.mapping import LogMapping, map_rows
from streams.replay_feed import json_lines


class LogFormatError(ValueError):
    pass


def read_csv(path: Path, columns: set[str] = frozenset()) -> Iterator[dict[str, str]]:
    """The rows of a CSV file (UTF-8, a BOM ignored, comma-separated, with a header row that holds
    every one of `columns`, the columns a mapping reads)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
            if not header:
                raise LogFormatError(f"{path}: no header row")
            missing = sorted(columns - set(header))
            if missing:
                raise LogFormatError(_missing_columns(path, missing, header))
            for row in reader:
                if None in row:
                    raise LogFormatError(f"{path}, line {reader.line_num}: more fields than the header has")
                yield row
        except UnicodeDecodeError as exc:
            raise LogFormatError(f"{path}: not UTF-8 text ({exc.reason}, {_where_not_utf8(path)}); save the "
                                 f"file as UTF-8 (Excel: 'CSV UTF-8'; a file from a Chinese system is often GBK: "
                                 f"iconv -f GBK -t UTF-8)") from None


def _missing_columns(path: Path, missing: list[str], header: list[str]) -> str:
    text = (f"{path}: the mapping reads column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}, which the header does not have; the header is "
            f"{', '.join(repr(c) for c in header)}")
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        text += "; the file looks separated by something else than commas: save it comma-separated"
    elif any(c != c.strip() for c in header):
        text += "; some header names have spaces around them"
    return text


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_xes(path: Path) -> Iterator[dict[str, Any]]:
    """Events of an XES (IEEE 1849) log as flat rows; trace attributes prefixed with 'case:'."""
    trace: dict[str, Any] = {}
    depth_event = False
    try:
        for action, element in ET.iterparse(str(path), events=("start", "end")):
            tag = _local(element.tag)
            if action == "start":
                if tag == "trace":
                    trace = {}
                elif tag == "event":
                    depth_event = True
                continue
            if tag == "event":
                row = dict(trace)
                for child in element:
                    key = child.get("key")
                    if key is not None and _local(child.tag) not in ("list", "container"):
                        row[key] = child.get("value")
                depth_event = False
                element.clear()
                yield row
            elif tag == "trace":
                element.clear()
            elif not depth_event and element.get("key") is not None and tag not in ("list", "container"):
                trace[f"case:{element.get('key')}"] = element.get("value")
    except ET.ParseError as exc:
        raise LogFormatError(f"{path}: not well-formed XES: {exc}") from None


@dataclass
class ImportResult:
    rows: int = 0
    events: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    skipped: int = 0
    duplicated_in_file: int = 0


def _where_not_utf8(path: Path) -> str:
    """Where a file's first byte that is not UTF-8 is (the reader decodes in chunks, so its own
    line count is where the chunk began, not where the byte is)."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return f"line {line}, byte {column} of the line: 0x{data[exc.start]:02x}"
    return "somewhere in the file"


def convert(path: Path, mapping: LogMapping | None) -> ImportResult:
    """Read a log and map it to contract events; rejects carry the row number and the reason."""
    result = ImportResult()
    if mapping is None and path.name.lower().endswith((".csv", ".xes", ".xes.gz")):
        raise LogFormatError(f"{path}: a {'CSV' if path.name.lower().endswith('.csv') else 'XES'} log needs "
                             f"--mapping FILE, which says which columns are the case, the activity and the time "
                             f"(docs/importing.md); without one, a file is read as JSON lines of contract events")
    if mapping is None or mapping.format == "jsonl":
        rows = _jsonl_events(path, result)
    else:
        rows = map_rows(read_csv(path, mapping.columns()) if mapping.format == "csv" else read_xes(path), mapping)
    seen: set[str] = set()
    for number, event, reason in rows:
        result.rows = max(result.rows, number)
        if event is None:
            if reason and reason.startswith("skipped"):
                result.skipped += 1
            else:
                result.rejected.append({"row": number, "reason": reason})
            continue
        if event["event_id"] in seen:
            result.duplicated_in_file += 1
            continue
        seen.add(event["event_id"])
        result.events.append(event)
    return result


def _jsonl_events(path: Path, result: ImportResult):
    with open(path, "rb") as handle:
        for number, line in json_lines(handle):
            try:
                obj = orjson.loads(line)
                parse_event(obj)
            except orjson.JSONDecodeError as exc:
                yield number, None, f"invalid JSON: {exc}"
                continue
            except InvalidEvent as exc:
                yield number, None, str(exc)
                continue
            if isinstance(obj, dict):
                obj.setdefault("channel", "import")
            yield number, obj, None
