"""Dead letters: messages that could not be processed, kept with the reason, never lost.

A letter is identified by what was refused: the topic it came from, its bytes and the
reason (and its key, when the key is what names its case: a payload that names none), so the
same bad message refused again (a re-import of the same file, a redelivery) is the same letter,
and one payload refused under two cases' keys is two letters, each holding its case. Its source
position (partition, offset) is kept as where it was last seen. Where the payload names them,
the letter carries the case, event, department and region, so that a department sees its own
letters, as it sees its own alerts (a letter that names its case but no department, a tombstone
keyed by its case say, gets those of the case from the worker that holds it: `filed_under`). A
letter is `open` until a corrected event replaces it (`redriven`), or an operator closes it with
a reason (`closed`: one no corrected event can replace). Pure: bytes in, a letter out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson

from alerts.catalog import Catalog
from alerts.events import CLOCK_SKEW, READ_BY_NO_RULE, InvalidEvent, parse_time
from alerts.state import refusal

PAYLOAD_BYTES = 256 * 1024  # kept of a payload; base64 of this stays well under Kafka's 1 MB record

# Why a message was refused, in the words the people at the screens read (a reason not listed
# shows as its code).
REASON_TITLE: dict[str, str] = {
    "invalid_json": "不是JSON",
    "invalid_utf8": "不是UTF-8文本",
    "schema": "字段不符合格式",
    "bad_time": "时间格式错误",
    "impossible_time": "时间不合理",
    "too_large": "消息过大",
    "empty": "空消息",
    "unknown_item": "未知事项",
    "unknown_node": "未知环节",
    "unknown_department": "未知部门",
    "item_left_catalog": "事项已移出目录",
    "case_too_large": "办件事件过多",
    "conflicting_duplicate": "同一事件内容不一致",
    "store_refused": "存储拒绝写入",
    "internal_error": "内部错误",
    "unreadable_row": "导入行无法读取",
    "case_incomplete": "导入办件不完整（暂缓导入）",
    "malformed_action": "督办操作格式错误",
    "wrong_department": "非本部门督办件",
    "unknown_ticket": "未知督办件",
    "unknown_alert": "未知预警",
    "not_allowed": "不允许的督办操作",
    "text_too_long": "文字过长",
    "stale_version": "督办件已更新（操作过时）",
    "transaction_not_ended": "事务未提交（视为撤销）",
}
# What to do about a letter of each reason, for the people at the screens: its detail is the
# system's own words (English, naming the field and the value), for whoever mends the sender.
REASON_ADVICE: dict[str, str] = {
    "invalid_json": "来源系统须发送一个符合数据规范的JSON对象，修正后以原事件编号重新发送；无法看出事件编号的，由运维人员按死信编号重投（sunlight dlq redrive）。",
    "invalid_utf8": "来源系统须以UTF-8编码发送，修正后以原事件编号重新发送。",
    "schema": "按说明中指出的字段（缺失、多余或取值不符）修正后，以原事件编号重新发送。",
    "bad_time": "时间须为带时区的ISO 8601格式（如2026-03-02T09:00:00+08:00），修正后以原事件编号重新发送。",
    "impossible_time": "时间不合理（不在1990至2099年之间，或登记早于发生），核实后以原事件编号重新发送。",
    "too_large": "消息超过大小上限，精简附加字段（attrs）后以原事件编号重新发送。",
    "empty": "空消息（含删除标记），不含事件，无从重投：反复出现的，检查来源系统的发送程序；核查后由运维人员注明原因关闭（sunlight dlq close）。",
    "unknown_item": "事项编码不在事项目录中：核对编码后以原事件编号重新发送，或在目录中补充该事项后重投。",
    "unknown_node": "环节不在该事项的办理流程中：核对环节编码后以原事件编号重新发送，或在目录中补充该环节后重投。",
    "unknown_department": "部门编码不在目录中：核对编码后以原事件编号重新发送，或在目录中补充该部门后重投。",
    "item_left_catalog": "事项已移出目录，其事件不再评判；确需监察的，将事项恢复到目录后重投，否则由运维人员注明原因关闭（sunlight dlq close）。",
    "case_too_large": "该办件的事件数超过上限，后续事件未存储：核查来源系统是否重复推送该办件，核查后由运维人员注明原因关闭（sunlight dlq close）。",
    "conflicting_duplicate": "同一事件编号再次发送而内容不同，系统保留原有内容；更正的事实须使用新的事件编号，经运维人员以 sunlight dlq redrive 指明本死信重投后，本死信标记为已重投；核实为误发的，由运维人员注明原因关闭（sunlight dlq close）。",
    "store_refused": "存储拒绝写入，属系统自身原因，不计入部门不规范；存储恢复后由运维人员重投。",
    "internal_error": "系统内部错误，不计入部门不规范；运维人员查看日志后重投。",
    "unreadable_row": "导入文件中该行无法读取，修正该行后以原文件名重新导入。",
    "case_incomplete": "同一办件另有无法读取的行，整件暂缓导入；修正那些行后以原文件名重新导入。",
    "malformed_action": "督办操作内容不完整，未执行：检查发出该操作的系统（如OA接口）。",
    "wrong_department": "对非本部门的督办件操作，未执行：检查发出该操作的系统或账号。",
    "unknown_ticket": "督办件不存在，操作未执行：核对督办件编号。",
    "unknown_alert": "预警不存在，未能发起督办：核对预警编号。",
    "not_allowed": "督办件当前状态不允许此操作，未执行，已告知操作人，无需处理。",
    "text_too_long": "内容超过字数上限，未执行：删减后重新提交。",
    "stale_version": "督办件已有更新，操作未执行，已告知操作人，无需处理。",
    "transaction_not_ended": ("来源系统以事务发送事件，却在时限内既未提交也未撤销（如发送程序中途退出），按Kafka的规则视为撤销，"
                              "事件未评判：核实该批事件确已提交的，由运维人员重投（sunlight dlq redrive）；"
                              "确已放弃的，注明原因关闭（sunlight dlq close）。"),
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    letter_id: str
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str  # the message as received (UTF-8, or base64 when it was not text), cut to PAYLOAD_BYTES
    payload_encoding: str  # "utf-8" | "base64", with "; truncated from N bytes" when cut
    case_id: str | None = None
    event_id: str | None = None
    department: str = ""
    region: str = ""
    status: str = "open"  # open | redriven | closed
    redriven_at: datetime | None = None
    version: int = 1
    closed_at: datetime | None = None  # closed by an operator (`closed`): when, who, and why
    closed_by: str | None = None
    closed_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The letter as the DLQ topic carries it (`error` is the detail, as before)."""
        return {"letter_id": self.letter_id, "reason": self.reason, "detail": self.detail, "error": self.detail,
                "topic": self.topic, "partition": self.partition, "offset": self.offset, "key": self.key,
                "case_id": self.case_id, "event_id": self.event_id, "department": self.department,
                "region": self.region, "payload": self.payload, "payload_encoding": self.payload_encoding}


def letter_id(topic: str, raw: bytes, reason: str, key: bytes | None = None) -> str:
    """`key`: the record's key when it names the letter's case (the payload names none)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (topic.encode(), raw, reason.encode(), *(() if key is None else (b"key", key))):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


KEY_CHARS = 1000


def make_letter(topic: str, partition: int, offset: int, key: bytes | str | None, raw: bytes, reason: str,
                detail: str, catalog: Catalog | None = None, read: RefusedRecord | None = None) -> DeadLetter:
    """A letter for a refused message; the case, department and region are read from its
    payload when it is a JSON object that names them (the department falls back on the
    catalog's item, the region on the catalog's department). `read`: the record as its refusal
    read it already (`read_refused`)."""
    cut = raw[:PAYLOAD_BYTES]
    try:
        text, encoding = cut.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(cut).decode(), "base64"
    if len(raw) > PAYLOAD_BYTES:
        encoding += f"; truncated from {len(raw)} bytes"
    named_case = _case_of_key(key)
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:  # kept as base64, as the payload is (a binary key read as text lost its
            kept = key[:KEY_CHARS // 2]  # bytes: found by a black-box test with other clients)
            key = "base64:" + base64.b64encode(kept).decode() + (
                f"… (cut from {len(key)} bytes)" if len(kept) < len(key) else "")
    if key is not None and len(key) > KEY_CHARS:  # a case id is short; a key of megabytes is not kept whole
        key = f"{key[:KEY_CHARS]}… (cut from {len(key)} characters)"
    labels = _labels(read_refused(raw, read), catalog)
    case_key = None
    if not labels.get("case_id") and named_case:  # a payload that names none (empty, a tombstone, not
        labels["case_id"] = named_case  # JSON): the contract keys an event by its case_id
        case_key = named_case.encode()  # and the same bytes under another case's key are another letter
    return DeadLetter(letter_id(topic, raw, reason, case_key), reason, detail[:2000], topic, partition, offset, key,
                      text, encoding, **labels)


UTF8_BOM = b"\xef\xbb\xbf"  # before a record's JSON, as .NET and PowerShell producers write one (RFC 8259 lets it be)

# Read for its labels, whole, up to this size (parsing 16 MB takes some tens of milliseconds; a
# message refused as too large is often just over a broker's 1 MB, or a few MB). A larger one is
# scanned for its ids only (`_scanned_ids`).
LABELLED_BYTES = 16 * 1024 * 1024

# The ids a record too large to parse is scanned for: the first `"name": "text"` (or whole number)
# of each. Not its `type`, department or region: an attachment's own `"type": "closed"` or
# department read as the event's would hold the case back less than it must, or file the letter
# under another department; a letter that names no type holds its case back whole.
_SCANNED_ID = re.compile(rb'"(event_id|case_id|item_code)"\s*:\s*(?:"((?:[^"\\\x00-\x1f]|\\.){1,128})"|(-?\d{1,20})\b)')


def _scanned_ids(raw: bytes) -> dict | None:
    """The event id, case id and item code a record too large to be parsed names, read by a scan
    of its bytes, as text; None when it names none. Before, such a record (a 17 MB attachment, a
    few kB once compressed) named nothing: its case was judged without the event, a false red
    `skipped_node` for a node that was done (found by a black-box test with other clients)."""
    found: dict[str, str] = {}
    for match in _SCANNED_ID.finditer(raw):
        name = match.group(1).decode()
        if name in found:
            continue
        text, number = match.group(2), match.group(3)
        try:
            value = orjson.loads(b'"' + text + b'"') if text is not None else number.decode()
        except orjson.JSONDecodeError:
            continue
        found[name] = value
        if len(found) == 3:
            break
    return found or None


def _case_of_key(key: bytes | str | None) -> str | None:
    """A record's key as the case it names: UTF-8 text of a case id's length, else None."""
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return key if key and len(key) <= 128 and key.isprintable() else None


def _payload_object(raw: bytes | None) -> dict | None:
    """The payload as a JSON object, if it is one. A payload in another encoding than UTF-8 (GBK
    from a Windows system, say) is read for what it names in plain ASCII (its ids, codes and type),
    a value that is not readable left out: its letter names its event, and its case waits for it
    (before, a GBK acceptance was refused naming no event, and its case was judged without it: red
    skipped_node cards for a handling that had an acceptance; found by a black-box test)."""
    if not raw:
        return None
    if len(raw) > LABELLED_BYTES:
        return _scanned_ids(raw)
    while raw.startswith(UTF8_BOM):  # as the event's own decoding reads it (`streams.steps.decode_event`)
        raw = raw[len(UTF8_BOM):]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
        else:
            return None  # text that is not JSON
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if isinstance(obj, dict):
            obj = {k: v for k, v in obj.items() if not (isinstance(v, str) and "\ufffd" in v)}
    return obj if isinstance(obj, dict) else None


_SPACE = re.compile(r"\s*")


def _loose_values(text: str) -> list[Any]:
    """The JSON values a text holds one after another, read loosely (NaN and Infinity taken as
    numbers, as Python's `json.dumps` writes them by default); ValueError when it holds anything
    else."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        at = _SPACE.match(text, at).end()  # (not a copy of the rest per value: many lines in one record)
        if at == len(text):
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


def wrapped_event(raw: bytes | None) -> tuple[dict | None, str | None]:
    """The event a refused record holds although it is not one JSON object of the contract, and
    how it was sent: a common mistake of a sending system that leaves the event readable.

    - `nan`: NaN or Infinity for a number (Python's `json.dumps` writes an empty pandas cell so),
      which JSON has not; `loose`: other JSON only a lenient parser reads (a lone surrogate, a
      number out of range);
    - `encoded_twice`: a JSON string that holds the event's JSON;
    - `connect_envelope`: the event in `payload` of a Kafka Connect envelope (`JsonConverter` with
      `schemas.enable=true`, Connect's default);
    - `array:N`, `lines:N`: N events in one record, as an array or as JSON lines (the first is
      returned);
    - `schema_registry`: the JSON after a schema registry's framing (a zero byte and a 4-byte
      schema id: confluent-kafka's `JSONSerializer`); `utf16`: JSON in UTF-16 (.NET's
      `Encoding.Unicode`), with or without its byte-order mark (both found by a black-box test
      with other clients: refused naming no event, their cases raised false red cards).

    (None, None) for anything else. Its ids name the event and its case in the letter, so that the
    case waits for it (`refused_event`): judged without it, the case may look late or skipped (a
    false red `skipped_node` for an acceptance sent with a NaN; found by a black-box test with
    other clients)."""
    if not raw or len(raw) > LABELLED_BYTES:
        return None, None
    while raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    text, framing = _unframed(raw)
    try:
        values = _loose_values(text if text is not None else raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    if not values:
        return None, None
    first, how = values[0], None
    if len(values) > 1:
        how = f"lines:{len(values)}"
    elif isinstance(first, list):
        how = f"array:{len(first)}"
        first = first[0] if first else None
    elif isinstance(first, str):
        try:
            first, how = json.loads(first), "encoded_twice"
        except ValueError:
            return None, None
    if _connect_envelope(first):
        first, how = first["payload"], how or "connect_envelope"
    if not isinstance(first, dict):
        return None, None
    if framing is not None:
        return first, how or framing
    if how is None:
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:  # read loosely only: NaN or Infinity, or else (a lone surrogate,
            how = "nan" if _NAN.search(raw) else "loose"  # a number out of range: found by review)
        else:
            return None, None  # one plain object: the event itself, not wrapped
    return first, how


def _unframed(raw: bytes) -> tuple[str | None, str | None]:
    """(the text, how it was framed) of a record sent in a schema registry's framing or in UTF-16
    (`wrapped_event`); (None, None) for anything else."""
    if raw[:1] == b"\x00" and raw[5:6] in (b"{", b"["):  # magic byte 0, a 4-byte schema id, then JSON
        try:
            return raw[5:].decode("utf-8"), "schema_registry"
        except UnicodeDecodeError:
            return None, None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"  # its byte-order mark says which
    elif raw[1:2] == b"\x00" and raw[:1] in (b"{", b"["):
        encoding = "utf-16-le"
    elif raw[:1] == b"\x00" and raw[1:2] in (b"{", b"["):
        encoding = "utf-16-be"
    else:
        return None, None
    try:
        return raw.decode(encoding), "utf16"
    except UnicodeDecodeError:
        return None, None


def _connect_envelope(value: Any) -> bool:
    """A Kafka Connect envelope (`{"schema": ..., "payload": {...}}`), not an event of its own."""
    return (isinstance(value, dict) and "case_id" not in value and "schema" in value
            and isinstance(value.get("payload"), dict))


_NAN = re.compile(rb"(?<![\w\"])-?(?:NaN|Infinity)(?![\w\"])")

_WRAPPED_HINT = {
    "nan": "NaN and Infinity are not JSON (RFC 8259): write null, or leave the field out",
    "loose": ("only a lenient parser reads it (a lone surrogate in a string, a number out of range): "
              "send strict JSON (RFC 8259)"),
    "encoded_twice": "the record is a JSON string that holds the event: it was encoded twice",
    "connect_envelope": ("the event is the `payload` of a Kafka Connect envelope: send the event itself "
                         "(JsonConverter with schemas.enable=false)"),
    "array": "the record is an array of {n} events: send one event per record",
    "lines": "the record holds {n} JSON values: send one event per record",
    "schema_registry": ("the record is framed by a schema registry serializer (a zero byte and a 4-byte schema "
                        "id before the JSON): send the event's JSON itself, without the registry's serializer"),
    "utf16": "the record is UTF-16 text: send the event's JSON in UTF-8 (RFC 8259)",
}


class RefusedRecord:
    """A refused record read once for what it names: its payload as a plain JSON object
    (`_payload_object`) and the event it holds wrapped (`wrapped_event`), each read when first
    asked. The hint, the letter's labels and what its case waits for read the same record; made
    once per refusal (`streams.steps.decode_event`) and passed to each, the record is parsed once,
    not once for each (found by review: up to three lenient parses of one refused record)."""

    def __init__(self, raw: bytes | None):
        self.raw = raw

    @cached_property
    def payload(self) -> dict | None:
        return _payload_object(self.raw)

    @cached_property
    def wrapped(self) -> tuple[dict | None, str | None]:
        return wrapped_event(self.raw)


def read_refused(raw: bytes | None, read: RefusedRecord | None = None) -> RefusedRecord:
    """`read` when it is the reading of `raw` (the same bytes), else a reading of `raw`."""
    return read if read is not None and read.raw is raw else RefusedRecord(raw)


def wrapped_event_hint(raw: bytes | None, read: RefusedRecord | None = None) -> str | None:
    """What to change when a record holds its event wrapped (`wrapped_event`), in words; else None."""
    _, how = read_refused(raw, read).wrapped
    if how is None:
        return None
    kind, _, n = how.partition(":")
    return _WRAPPED_HINT[kind].format(n=n)


def _event_named(read: RefusedRecord) -> dict | None:
    """The JSON object a refused record holds, or the event it holds wrapped (`wrapped_event`), or
    else the ids its text names as its own (`_ids_at_the_top`): a line cut short (a truncated export, its last
    brace lost) named no case, and the rest of its case was judged without it, a false red
    `skipped_node` in a replay and an import alike (found by a black-box test)."""
    obj = read.payload
    if obj is not None and not _connect_envelope(obj):
        return obj
    obj = read.wrapped[0] or obj
    if obj is None and read.raw and len(read.raw) <= LABELLED_BYTES:  # (a larger one is scanned already)
        return _ids_at_the_top(read.raw)
    return obj


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')


def _ids_at_the_top(raw: bytes) -> dict | None:
    """The case and event ids a record cut short names as its own (keys of its outermost object,
    not ids quoted inside its `attrs`: read there, a line cut short held another case back, and
    kept it held once the line was mended; found by a black-box test); None unless it names both,
    each once."""
    found: dict[str, list[str]] = {}
    depth, key, after_colon = 0, None, False
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"{", b"["):
            depth, key, after_colon = depth + 1, None, False
        elif token in (b"}", b"]"):
            depth, key, after_colon = depth - 1, None, False
        elif token == b":":
            after_colon = key is not None
        elif depth == 1 and after_colon and key in ("case_id", "event_id"):  # the value of a top-level key
            try:
                value = orjson.loads(token)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, str) and 0 < len(value) <= 128:
                found.setdefault(key, []).append(value)
            key, after_colon = None, False
        else:  # a key (at the top, if followed by a colon), or a value of another key
            try:
                key = orjson.loads(token) if depth == 1 and not after_colon else None
            except orjson.JSONDecodeError:
                key = None
            after_colon = False
    if len(found.get("case_id", ())) != 1 or len(found.get("event_id", ())) != 1:
        return None
    return {"case_id": found["case_id"][0], "event_id": found["event_id"][0]}


def _text(obj: dict, name: str, limit: int = 128) -> str | None:
    """A label as text; a whole number as its digits (a client that wrote `"case_id": 42` means
    the case its other events name "42")."""
    value = obj.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


# The refusals of a case event that leave its case without one of its facts: the case is held
# back (not judged) until the event comes corrected (`alerts.state.refuse`); an import's rows it
# could not read, or held back with them, too (the import sends none of the case's rows, but its
# later events may come from elsewhere). Not these: a conflicting copy (the case holds the
# event), a case too large (the case keeps what it has, and a copy of the event would be refused
# again), what the store refused (the case has the event).
# The refusals of a ticket action the ticket had moved past (another person's action came first: a
# stale second tab, two inspectors at once): the person who acted is told where they acted (the
# console's page, the ticket command's output, both read from the letter), and nothing is to be
# redriven (`dlq redrive` refuses ticket actions). Kept as a record; not waiting, not alerted on.
# A malformed action, one naming a ticket or alert that does not exist, or another department's
# ticket is an error of whatever sent it (an OA system's integration): it waits, and is alerted on.
OVERTAKEN_ACTIONS = frozenset({"stale_version", "not_allowed"})

# Refusals that say nothing about the message sent: Sunlight's own failure (a bug, the store
# refusing a row). A department's push is not scored 不规范 for them (`sinks.scoring_inputs`).
SUNLIGHTS_OWN = frozenset({"internal_error", "store_refused"})

HOLDS_ITS_CASE = frozenset({"schema", "bad_time", "impossible_time", "too_large", "unknown_item", "unknown_node",
                            "unknown_department", "unreadable_row", "case_incomplete", "invalid_utf8",
                            "invalid_json"})  # a record that names its event only (`wrapped_event`: NaN, ...)


def refused_event(raw: bytes | None, reason: str, key: bytes | str | None = None,
                  read: RefusedRecord | None = None) -> tuple[str, str] | None:
    """(case_id, event_id) of a refused case event whose refusal holds its case back
    (`HOLDS_ITS_CASE`), as its letter names them (`make_letter`: the case from the payload, else
    the record's key); else None (a letter that names no event cannot be matched by a corrected
    one, and holds nothing)."""
    if reason not in HOLDS_ITS_CASE:
        return None
    obj = _event_named(read_refused(raw, read))
    if obj is None:
        return None
    case_id, event_id = _text(obj, "case_id") or _case_of_key(key), _text(obj, "event_id")
    return (case_id, event_id) if case_id and event_id else None


def refused_event_type(raw: bytes | None, read: RefusedRecord | None = None) -> str | None:
    """The `type` a refused event's payload names, if it names one (its case waits for it: what
    it could change of the case, `alerts.state.refusal`). Read from a plain JSON object only, as
    the store reads it back (`sinks.queries.refused_case_events`): a wrapped event
    (`wrapped_event`) holds its case as one of any type."""
    obj = _as_stored(raw, read).payload
    return _text(obj, "type") if obj is not None else None


def _as_stored(raw: bytes | None, read: RefusedRecord | None) -> RefusedRecord:
    """A refused record as its letter keeps it (the first `PAYLOAD_BYTES`): what the pipeline reads
    of its type and time is what the store reads back (`stored_event_type`, `stored_refusal`).
    Read whole, a node event of 400 kB named its type and time to the pipeline and none to the store:
    a case let go by the one was held back by the other (found by review)."""
    if raw is not None and len(raw) > PAYLOAD_BYTES:
        return RefusedRecord(raw[:PAYLOAD_BYTES])
    return read_refused(raw, read)


def kept_refusal(reason: str, raw: bytes | None, read: RefusedRecord | None = None) -> str:
    """What a case keeps of its refused event (`alerts.state.refusal`): the letter's reason, with the
    type and the time (`stated_time`) its payload names, read once, as its letter keeps it
    (`_as_stored`): what the case needs to know whether the event could change it
    (`alerts.state.holds_back`), the same in the pipeline and read back from the store
    (`stored_refusal`)."""
    obj = _as_stored(raw, read).payload
    if obj is None:
        return refusal(reason)
    return refusal(reason, _text(obj, "type"), stated_time(obj))


def stated_time(obj: dict) -> datetime | None:
    """The `occurred_at` an event's JSON object states, when it states that and its `recorded_at`
    readably, the one not before the other, as `alerts.events.parse_event` takes them; else None
    (a time the event was refused for is no time to judge by)."""
    try:
        occurred = parse_time(obj.get("occurred_at"), "occurred_at")
        recorded = parse_time(obj.get("recorded_at"), "recorded_at")
    except InvalidEvent:
        return None
    return occurred if recorded + CLOCK_SKEW >= occurred else None


def _labels(read: RefusedRecord, catalog: Catalog | None) -> dict[str, Any]:
    obj = _event_named(read)
    if obj is None:
        return {}

    def text(name: str, limit: int = 128) -> str | None:
        return _text(obj, name, limit)

    action = obj.get("action")
    if isinstance(action, dict) and "ticket_id" in action:
        # A ticket action refused (sent on by the ticket agent as {"action": ...}): the department
        # that acted, when it is one of the catalog's (an inspector's actions carry `INSPECTORS`),
        # so that a department sees its own refused replies (`dlq list --department`, row policies).
        department = _text(action, "department")
        known = catalog is not None and department in catalog.departments
        return {"department": department if known else "",
                "region": catalog.departments[department].region or "" if known else ""}
    department, region = text("department"), text("region", 32)
    item = catalog.item(text("item_code") or "") if catalog is not None else None
    # None named, or one the catalog lacks (an `unknown_department` letter): the item's, whose
    # department can mend what sent it (before, the letter was filed under the unknown code, which
    # no department's scope holds).
    if item is not None and (department is None or department not in catalog.departments):
        department = item.department
    if region is None and catalog is not None and department in catalog.departments:
        region = catalog.departments[department].region
    return {"case_id": text("case_id"), "event_id": text("event_id"), "department": department or "",
            "region": region or ""}


def filed_under(letter: DeadLetter, department: str, region: str) -> DeadLetter:
    """A letter that names its case but no department (a tombstone or an unreadable record keyed
    by its case), filed under the department and region its case has, as the worker knows them,
    so that the department sees its own letter, as it sees its own alerts; a letter that names
    its department stays as it is."""
    if letter.department or not letter.case_id:
        return letter
    return replace(letter, department=department, region=region or letter.region)


def holds_judgement(letter: DeadLetter) -> bool:
    """Whether a letter's refused event holds its case's judgement back (`HOLDS_ITS_CASE`, naming
    its case and event), unless it is of a type no rule reads (a rating,
    `alerts.events.READ_BY_NO_RULE`): an operator may close that one."""
    if letter.reason not in HOLDS_ITS_CASE or not letter.case_id or not letter.event_id:
        return False
    return stored_event_type(letter.payload, letter.payload_encoding) not in {t.value for t in READ_BY_NO_RULE}


def stored_event_type(payload: str, encoding: str) -> str | None:
    """The type a letter's payload names, read from it as the store keeps it (base64 when it was not
    UTF-8: GBK, say) as the pipeline read it when it refused it (`refused_event_type`); None when it
    names none. Read by SQL's JSON functions, a base64 payload named none: a GBK rating held its
    case back once the case was read back from the store, not while the pipeline held it (found by
    review)."""
    raw = _stored_raw(payload, encoding)
    return refused_event_type(raw) if raw is not None else None


def stored_refusal(reason: str, payload: str, encoding: str) -> str:
    """What a case keeps of its refused event, read from its letter as the store keeps it
    (`kept_refusal`)."""
    return kept_refusal(reason, _stored_raw(payload, encoding))


def _stored_raw(payload: str, encoding: str) -> bytes | None:
    try:
        return base64.b64decode(payload) if encoding.startswith("base64") else payload.encode()
    except ValueError:
        return None


CLOSING_REASON_CHARS = 500


def why_not_closed(letter: DeadLetter, case_waits: bool, judge_without: bool = False) -> str | None:
    """Why an operator may not close this letter, in one line; None when they may.

    Only an open letter is closed. Not one whose case waits for its event (`case_waits`: a refusal
    that holds its case, `HOLDS_ITS_CASE`, whose case has not received the event since): the case
    raises only the alerts no missing event could change (`alerts.evaluate.raised_while_waiting`)
    until the event comes corrected, and a closed letter would take it off the lists that say so, a case judged on nothing, out of sight. Its cure is
    the corrected event (`sunlight dlq redrive`). An import's letter (`unreadable_row`,
    `case_incomplete`) may be closed: its case is then let into later imports without the row, the
    operator's decision, with its reason (a junk row that is no step of the case held it back for
    good, the file corrected or not: found by review).

    With `judge_without` the operator says the refused record is no event of the case (a status
    ping, junk that named the case and an id): the letter is closed and the case judged on its
    other events (`alerts.state.release`). Without a way out, any record naming a case and an id
    held back that case's red cards for good (found by a black-box test with other clients)."""
    if letter.status != "open":
        return f"it is {letter.status} already"
    if case_waits and not judge_without:
        return (f"case {letter.case_id} waits for its event {letter.event_id}, and raises only the alerts no "
                f"missing event could change (late registrations, among them) until it comes corrected: send the "
                f"corrected event (`sunlight dlq redrive`) instead of closing the letter; if the record is no "
                f"event of the case, close it with --judge-without, and the case is judged without it")
    return None
