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
    from streams.catalog_source import read_yaml, yaml_of

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
    text = path.read_text(encoding="utf-8")
    rewritten = with_item_nodes(text, args.item, nodes, decided.get("decision_node"))
    if rewritten is None or yaml_of(rewritten.encode("utf-8"), path, "catalog") != raw:
        # Not as the file was written: as YAML writes it, the file's opening comment block kept.
        print(f"sunlight: {path} is written anew; its comments but the opening ones are not kept",
              file=sys.stderr)
        header = "".join(line for line in _leading_comments(text))
        rewritten = header + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    path.write_text(rewritten, encoding="utf-8")
    print(f"{path}: item {args.item} now has {len(nodes)} nodes from {args.file}", file=sys.stderr)
    return 0


def with_item_nodes(text: str, code: str, nodes: list[dict], decision_node: str | None) -> str | None:
    """The catalog `text` with item `code`'s nodes (and its decision node, when given) replaced, the
    rest as it was written: comments, quotes, order and layout (ruamel.yaml's round trip, in the
    indentation that gives the file back unchanged), the comment lines that followed the old nodes
    (the next item's heading, say) kept after the new ones. The new nodes are written one per line,
    as flow mappings when the item's were. None when the file cannot be given back unchanged (it is
    then written anew)."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # no long line folded
    try:
        data = rt.load(text)
    except YAMLError:
        return None
    for mapping, sequence, offset in _INDENTS:
        rt.indent(mapping=mapping, sequence=sequence, offset=offset)
        if _dumped(rt, data) == text:
            break
    else:
        return None
    # (None: read otherwise than YAML 1.1 reads it, an unquoted code such as 0012, say)
    item = next((i for i in data.get("items") or [] if isinstance(i, dict) and str(i.get("code")) == code), None)
    if item is None:
        return None
    old = item.get("nodes")
    flow = isinstance(old, CommentedSeq) and bool(old) and isinstance(old[-1], CommentedMap) \
        and old[-1].fa.flow_style()
    new = CommentedSeq()
    for node in nodes:
        entry = CommentedMap(node)
        for key, value in entry.items():
            if isinstance(value, list):  # `requires: [a, b]`, as the catalogs write it
                entry[key] = listed = CommentedSeq(value)
                listed.fa.set_flow_style()
        if flow:
            entry.fa.set_flow_style()
        new.append(entry)
    if isinstance(old, CommentedSeq) and old and new:
        _keep_what_followed(old, new, flow)
    if "nodes" in item:
        item["nodes"] = new
    else:
        item.insert(len(item), "nodes", new)
    if decision_node is not None:
        if "decision_node" in item:
            item["decision_node"] = decision_node
        else:
            item.insert(list(item).index("nodes"), "decision_node", decision_node)
    return _dumped(rt, data)


def _keep_what_followed(old, new, flow: bool) -> None:
    """The comment lines after the list of nodes `old` (a heading of the next item, say), put after
    `new`. ruamel.yaml keeps them at the end of the list, or with the end of line comment of its last
    entry (of that entry's last key, for a block mapping); that end of line comment is the old
    node's, and goes with it."""
    from ruamel.yaml.tokens import CommentToken

    new.ca.comment, new.ca.end = old.ca.comment, old.ca.end
    last, now_last = old[-1], new[-1]
    if flow:
        token = (old.ca.items.get(len(old) - 1) or [None])[0]
    elif hasattr(last, "ca") and last:
        token = (last.ca.items.get(list(last)[-1]) or [None, None, None])[2]
    else:
        return
    if token is None:
        return
    value = token.value
    rest = value.split("\n", 1)[1] if value.startswith("#") and "\n" in value else value.lstrip("\n")
    if not rest.strip():
        return
    following = CommentToken("\n" + rest, token.start_mark, None)
    if flow:
        new.ca.items[len(new) - 1] = [following, None, None, None]
    else:
        now_last.ca.items[list(now_last)[-1]] = [None, None, following, None]


# Indentations a catalog may be written in (mapping, sequence, offset of the dash): the catalogs'
# own (`- ` under its key, two spaces in), YAML's default, and the rest of the usual ones.
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 3, 1))


def _dumped(rt, data) -> str:
    import io

    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


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
