"""`sunlight catalog import-bpmn|import-pnml`: an item's nodes from a process model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

from streams.settings import Settings


def cmd_import_bpmn(args, settings: Settings) -> int:
    """Turn a BPMN flowchart (or, with `import-pnml`, a Petri net) into an item's nodes: print
    them, or write them into a catalog file."""
    import yaml

    from alerts.catalog import load_catalog
    from alerts.flowchart import catalog_nodes, decision_node, read_bpmn, read_pnml
    from streams.catalog_source import read_yaml

    read = read_pnml if args.catalog_command == "import-pnml" else read_bpmn
    nodes = catalog_nodes(read(Path(args.file).read_bytes(), strict=args.strict),
                          accepted=args.accepted_completes, closed=args.closed_completes)
    decided = {"decision_node": decision_node(nodes, args.decided_completes)} if args.decided_completes else {}
    if not args.catalog:
        sys.stdout.write(yaml.safe_dump({"code": args.item, **decided, "nodes": nodes}, allow_unicode=True,
                                        sort_keys=False))
        return 0
    path = Path(args.catalog)
    raw = read_yaml(path, "catalog")
    item = next((i for i in raw.get("items") or [] if str(i.get("code")) == args.item), None)
    if item is None:
        raise SystemExit(f"sunlight: item {args.item!r} is not in {path}; add it (code, name, category, "
                         f"department, promised_days) first")
    kept = item.get("decision_node")
    if not decided and kept is not None and kept not in {node["id"] for node in nodes}:
        raise SystemExit(f"sunlight: item {args.item}'s decision_node {kept!r} is not a node of {args.file}: name the "
                         f"node the decision completes with --decided-completes NODE (its nodes are "
                         f"{[node['id'] for node in nodes]}), or take decision_node out of {path}")
    item["nodes"] = nodes
    if decided:
        _put_before(item, "decision_node", decided["decision_node"], "nodes")  # as the catalogs write it
    load_catalog(raw)  # refuse to write a catalog that would not load
    # YAML loses comments on the way through; the file's opening comment block is kept.
    header = "".join(line for line in _leading_comments(path.read_text(encoding="utf-8")))
    path.write_text(header + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    print(f"{path}: item {args.item} now has {len(nodes)} nodes from {args.file}", file=sys.stderr)
    return 0


def _put_before(mapping: dict, key: str, value, before: str) -> None:
    """`mapping[key] = value`, the key placed before `before` (at the end without it)."""
    entries = [(k, v) for k, v in mapping.items() if k != key]
    at = next((n for n, (k, _) in enumerate(entries) if k == before), len(entries))
    entries.insert(at, (key, value))
    mapping.clear()
    mapping.update(entries)


def _leading_comments(text: str) -> Iterator[str]:
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            return
        yield line
