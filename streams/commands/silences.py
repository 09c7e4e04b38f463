"""`sunlight silences add|list|expire`: tickets and notices stopped for an item or a department."""

from __future__ import annotations

from datetime import datetime

from streams.commands.common import parse_now, local_zone, catalog_for, print_jsonl, require_store, open_store
from streams.settings import Settings


def _silence_time(moment: datetime, local) -> str:
    """A silence's moment as people read it: in the catalog's timezone, to the minute."""
    return moment.astimezone(local).strftime("%Y-%m-%d %H:%M")


SILENCE_INSERT = ("silence_id", "item_code", "department", "until", "reason", "created_by", "created_at",
                  "expired_at", "version")


def cmd_silences_add(args, settings: Settings) -> int:
    import uuid

    from alerts.catalog import CatalogError
    from streams.clock import wall_now

    catalog = catalog_for(args, settings, "a silence's item or department is checked against the catalog")
    if args.item and catalog.item(args.item) is None:
        raise CatalogError(f"item {args.item!r} is not in the catalog")
    if args.department and args.department not in catalog.departments:
        raise CatalogError(f"department {args.department!r} is not in the catalog")
    until = parse_now(args.until, "--until")
    silence_id = "S-" + uuid.uuid4().hex[:10]
    with open_store(settings) as client:
        client.insert("silences", [[silence_id, args.item, args.department, until, args.reason, args.actor,
                                    wall_now(), None, 1]], column_names=SILENCE_INSERT)
    target = f"事项 {args.item}" if args.item else f"部门 {args.department}"
    from zoneinfo import ZoneInfo

    # The stream's clock decides (a replay with an earlier --now is silenced): said when the wall
    # clock has passed it already, as `silences list` will show it ended (found by a docs review).
    past = "。按当前时间此静默已结束，只对时钟更早的回放和导入有效" if until <= wall_now() else ""
    print(f"{silence_id}: {target} 静默至 {_silence_time(until, ZoneInfo(catalog.timezone))}（{args.reason}）；"
          f"督办件与通知暂停，预警照常{past}")
    return 0


def cmd_silences_list(args, settings: Settings) -> int:
    require_store(settings)
    from alerts.tickets import Silence
    from sinks.queries import stored_silences
    from streams.clock import wall_now

    local = local_zone(args, settings)
    with open_store(settings) as client:
        found = stored_silences(client)
    if args.format == "jsonl":
        print_jsonl(found)
        return 0
    if not found:
        print("没有静默 (no silences)")
        return 0
    now = wall_now()
    for record in found:
        ends = Silence.from_record(record).until
        state = "生效中" if ends > now else "已结束"  # by the wall clock, as the list says
        target = f"事项 {record['item_code']}" if record["item_code"] else f"部门 {record['department']}"
        print(f"{record['silence_id']}  {target}  至 {_silence_time(ends, local)}  {state}  {record['reason']}  "
              f"（{record['created_by']}）")
    return 0


def cmd_silences_expire(args, settings: Settings) -> int:
    from sinks.queries import stored_silences
    from streams.clock import wall_now

    at = parse_now(args.at, "--at") or wall_now()
    local = local_zone(args, settings)
    with open_store(settings) as client:
        found = [r for r in stored_silences(client) if r["silence_id"] == args.silence_id]
        if not found:
            raise SystemExit(f"sunlight: no silence {args.silence_id} (sunlight silences list)")
        record = found[0]
        client.insert("silences", [[record["silence_id"], record["item_code"], record["department"],
                                    datetime.fromisoformat(record["until"]), record["reason"], record["created_by"],
                                    datetime.fromisoformat(record["created_at"]), at, record["version"] + 1]],
                      column_names=SILENCE_INSERT)
    print(f"{args.silence_id}: 已于 {_silence_time(at, local)} 结束")
    return 0
