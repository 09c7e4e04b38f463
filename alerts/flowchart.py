"""Flowcharts (流程图) in BPMN 2.0 turned into a catalog item's `nodes`. Pure: XML text in, nodes out.

What a catalog can say is narrower than BPMN, so the translation is:

* tasks become nodes, in a topological order of the flow (document order breaks ties);
* a task on every path from the start to an end is `required`; a task behind an exclusive
  gateway (选择分支) that some paths avoid is optional;
* a node `requires` the nearest tasks that must have completed before it on every path: behind
  a parallel join (并行汇聚), the last task of each branch;
* a loop (a flow back to an earlier point: 退回重办) is re-work: a task that every path passes,
  once or again, is `required` (a case closed without it skipped it) and requires what every
  path has done before it, as outside a loop; a task that only the way back passes (a 补正 on
  return) is optional. A node done once stays done, so doing it again is accepted. With
  `strict=True` a loop is refused with the tasks it contains;
* annotations and data (text annotations, groups, data objects and stores) are ignored, and an
  intermediate event on one path (a timer's wait, a message or signal waited for or sent) passes
  the flow on;
* several end events (准予, 不予许可) each end a path: a task is required when every path to any
  of them passes it.

Anything else the catalog cannot express (inclusive or event-based gateways, sub-processes,
more than one start, two tasks of one name: a log names a step by its name, so it could
complete one of them only) is refused with a clear error.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Sequence

SUPPORTED = {"task", "userTask", "manualTask", "serviceTask", "scriptTask", "businessRuleTask", "sendTask",
             "receiveTask", "exclusiveGateway", "parallelGateway", "startEvent", "endEvent"}
TASKS = {"task", "userTask", "manualTask", "serviceTask", "scriptTask", "businessRuleTask", "sendTask",
         "receiveTask"}
# Annotations and data, beside the control flow: nothing a case's path passes.
IGNORED = {"sequenceFlow", "incoming", "outgoing", "documentation", "extensionElements", "laneSet",
           "conditionExpression", "dataObject", "dataObjectReference", "dataStoreReference", "property",
           "textAnnotation", "association", "group"}
# An intermediate event on one path (a wait of 5 days, for a message, a signal or a condition; a
# notice sent on the way) passes the flow on, as a task that is no node would.
INTERMEDIATE = {"intermediateCatchEvent", "intermediateThrowEvent"}
PASSED_ON = {"timer", "message", "signal", "conditional"}


class FlowchartError(ValueError):
    pass


@dataclass(frozen=True)
class FlowNode:
    id: str
    name: str
    required: bool
    requires: tuple[str, ...]
    rework: bool  # inside a loop

    def to_catalog(self) -> dict:
        out: dict = {"id": self.id, "name": self.name}
        if not self.required:
            out["required"] = False
        out["requires"] = list(self.requires)
        return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def node_id_for(name: str, used: set[str], element_id: str = "") -> str:
    """`T07-1 Draft ...` (`01 受理`) -> `T07-1` (`01`); a name without Latin letters (受理, 审核)
    -> the task's BPMN id as written (the activity id a workflow engine reports for it), not
    `node`, `node_2`, ...; other names -> a slug; made unique."""
    first = name.split()[0] if name.split() else ""
    if re.fullmatch(r"[A-Za-z]{0,3}\d+[A-Za-z0-9\-.]*", first):
        base = first
    elif not re.search(r"[A-Za-z]", name) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-.]{0,127}", element_id):
        base = element_id
    else:
        base = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower() or "node"
    return _unique(base, used)


def _unique(base: str, used: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... if taken; noted as taken."""
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    used.add(candidate)
    return candidate


def read_bpmn(text: str | bytes, strict: bool = False) -> list[FlowNode]:
    root = _xml_root(text, "BPMN")
    processes = [e for e in root.iter() if _local(e.tag) == "process"]
    if len(processes) != 1:
        raise FlowchartError(f"expected one <process>, found {len(processes)}")
    kinds: dict[str, str] = {}
    names: dict[str, str] = {}
    flows: list[tuple[str, str]] = []
    for element in processes[0]:
        kind = _local(element.tag)
        if kind == "sequenceFlow":
            flows.append((element.get("sourceRef"), element.get("targetRef")))
        elif kind in SUPPORTED or kind in INTERMEDIATE:
            ident, name = element.get("id"), (element.get("name") or "").strip()
            kinds[ident], names[ident] = kind, name
            definitions = [_local(c.tag).removesuffix("EventDefinition") for c in element
                           if _local(c.tag).endswith("EventDefinition")]
            if kind in INTERMEDIATE and any(d not in PASSED_ON for d in definitions):
                raise FlowchartError(f"{_described(kind, ident, name)} is a {' and '.join(definitions)} event, "
                                     f"which cannot be expressed in the catalog: only a "
                                     f"{', '.join(sorted(PASSED_ON))} event on one path is passed through; draw the "
                                     f"flow it stands for with sequence flows and gateways")
        elif kind not in IGNORED:
            raise FlowchartError(f"{_described(kind, element.get('id'), (element.get('name') or '').strip())} cannot "
                                 f"be expressed in the catalog")
    starts = [_described("startEvent", i, names[i]) for i, k in kinds.items() if k == "startEvent"]
    if len(starts) != 1:
        raise FlowchartError(f"expected one start event, found {len(starts)}{': ' if starts else ''}"
                             f"{', '.join(starts)}: draw one, with an exclusive gateway after it where cases begin "
                             f"in different ways")
    if "endEvent" not in kinds.values():
        raise FlowchartError("the process has no end event: draw one where each path ends")
    for source, target in flows:
        if source not in kinds or target not in kinds:
            raise FlowchartError(f"sequence flow {source} -> {target} refers to an unknown element")
    for ident in (i for i, k in kinds.items() if k in INTERMEDIATE):
        into, out = sum(t == ident for _, t in flows), sum(s == ident for s, _ in flows)
        if (into, out) != (1, 1):
            raise FlowchartError(f"{_described(kinds[ident], ident, names[ident])} has {into} incoming and {out} "
                                 f"outgoing sequence flows: an intermediate event is passed through only on one path "
                                 f"(one flow in, one out); draw a gateway beside it where paths split or meet")
    named: dict[str, str] = {}
    for ident in (i for i, k in kinds.items() if k in TASKS and names[i]):
        if names[ident] in named:  # a log names the step by its name, which would reach one of them only
            raise FlowchartError(f"tasks {named[names[ident]]!r} and {ident!r} are both named {names[ident]!r}: the "
                                 f"catalog has one node per activity, and an event log names the step by one name; "
                                 f"give each task a name of its own, or draw one task if they are one step")
        named[names[ident]] = ident
    return _flow_nodes(kinds, names, flows, strict)


def _described(kind: str, ident: str | None, name: str) -> str:
    """`intermediateCatchEvent 'Timer_1' (等待5日)`: an element as an error names it."""
    return f"{kind} {ident!r}" + (f" ({name})" if name else "")


def _flow_nodes(kinds: dict[str, str], names: dict[str, str], flows: list[tuple[str, str]],
                strict: bool, id_of: Callable[[str, set[str], str], str] | None = None) -> list[FlowNode]:
    """The nodes of a flow graph in BPMN's terms (`kinds`: one startEvent, endEvents, tasks,
    exclusive and parallel gateways, intermediate events on one path, which pass the flow on;
    `names` of the tasks; `flows` between them, all known).
    `id_of(name, used, element_id)` names a node (`node_id_for` unless said)."""
    id_of = id_of or node_id_for
    successors: dict[str, list[str]] = {i: [] for i in kinds}
    predecessors: dict[str, list[str]] = {i: [] for i in kinds}
    for source, target in flows:
        successors[source].append(target)
        predecessors[target].append(source)
    start = next(i for i, k in kinds.items() if k == "startEvent")
    ends = [i for i, k in kinds.items() if k == "endEvent"]
    order = list(kinds)  # document order

    # Loops: back edges of a depth-first walk from the start; their members form cycles.
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    stack = [(start, iter(successors[start]))]
    state[start] = 1
    while stack:
        node, children = stack[-1]
        for child in children:
            if state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(successors[child])))
                break
        else:
            state[node] = 2
            stack.pop()
    unreachable = [names[i] or i for i in order if i not in state]
    if unreachable:
        raise FlowchartError(f"not reachable from the start: {unreachable}")
    in_loop: set[str] = set()
    for source, target in back:  # members of the cycle closed by this back edge
        forward = _reach(target, successors, back)
        backward = _reach(source, predecessors, {(b, a) for a, b in back})
        in_loop |= forward & backward
    loop_tasks = sorted(names[i] for i in in_loop if kinds[i] in TASKS)
    if strict and loop_tasks:
        raise FlowchartError(f"loops back to earlier nodes (re-work) around: {loop_tasks}")

    # Forward graph without back edges, in topological order.
    forward_succ = {i: [t for t in successors[i] if (i, t) not in back] for i in kinds}
    forward_pred = {i: [s for s in predecessors[i] if (s, i) not in back] for i in kinds}
    topo = _topological(order, forward_succ, forward_pred)

    # must[n]: the tasks that have completed whenever n is reached, on every path, loops included
    # (dominators, with parallel joins taking the union of their branches): a fixpoint from
    # "everything" down, over the flows back too, so a task every path passes, once or again, is
    # required, and a task only the way back passes (a 补正 on return) is not.
    everything = {i for i in kinds if kinds[i] in TASKS}
    must: dict[str, set[str]] = {node: (set() if node == start else set(everything)) for node in kinds}
    changed = True
    while changed:
        changed = False
        for node in topo:
            if node == start:
                continue
            incoming = [must[p] for p in predecessors[node]]
            if kinds[node] == "parallelGateway" and len(forward_pred[node]) > 1:
                base = set().union(*(must[p] for p in forward_pred[node]))
            else:
                base = set.intersection(*incoming)
            value = base | ({node} if kinds[node] in TASKS else set())
            if value != must[node]:
                must[node], changed = value, True
    # Each end event ends a path (准予, 不予许可): required is what every path to any of them has done.
    # Parallel branches that end at ends of their own are read so too: their tasks are optional
    # (joined before one end, they are required).
    required = set.intersection(*(must[end] for end in ends))
    used: set[str] = set()
    ids = {i: id_of(names[i] or i, used, i) for i in topo if kinds[i] in TASKS}
    nodes = []
    for task in (i for i in topo if kinds[i] in TASKS):
        before = must[task] - {task}
        # The nearest: those no other member of `before` has already required.
        nearest = [b for b in before if not any(b in must[o] - {o} for o in before if o != b)]
        nearest.sort(key=topo.index)
        nodes.append(FlowNode(ids[task], names[task] or task, task in required,
                              tuple(ids[n] for n in nearest), task in in_loop))
    if not nodes:
        raise FlowchartError("the process has no tasks")
    return nodes


def _xml_root(text: str | bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        hint = ""
        if isinstance(text, bytes):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as bad:
                hint = (f"; it is not UTF-8 text (byte 0x{text[bad.start]:02x} at offset {bad.start}): save it as "
                        f"UTF-8 (from a Chinese system, often GBK: iconv -f GBK -t UTF-8)")
        raise FlowchartError(f"not well-formed {what} XML: {exc}{hint}") from None
    except ValueError as exc:  # an encoding the XML parser cannot read ("multi-byte encodings are not supported")
        raise FlowchartError(f"{what} in an encoding that cannot be read ({exc}): save it as UTF-8") from None


def _child(element: ET.Element, *path: str) -> ET.Element | None:
    """The first descendant along `path` of local tag names, whatever the namespace."""
    for tag in path:
        element = next((c for c in element if _local(c.tag) == tag), None)
        if element is None:
            return None
    return element


def _text(element: ET.Element, *path: str) -> str:
    found = _child(element, *path, "text")
    return (found.text or "").strip() if found is not None else ""


def _tokens(element: ET.Element, *path: str) -> int:
    text = _text(element, *path)
    try:
        return int(text) if text else 0
    except ValueError:
        raise FlowchartError(f"{_local(element.tag)} {element.get('id')!r}: {'/'.join(path)} is not a number of "
                             f"tokens: {text!r}") from None


def read_pnml(text: str | bytes, strict: bool = False) -> list[FlowNode]:
    """A Petri net in PNML (the process models process-mining tools such as PM4Py and ProM write)
    turned into an item's nodes, as a flowchart is. The net must be a workflow net: one place
    marked with one token at the start (its source), one place that ends it (its final marking,
    else the one place without outgoing arcs), arcs of weight one. It is read as a flowchart:
    a place is an exclusive choice and merge, a labelled transition a task (with a parallel split
    or join where it has several output or input places), a silent one (ProM's `$invisible$`, or
    no label) a parallel gateway, which passes the flow on. So a task that every firing sequence
    from the source to the end passes is `required`, one that a choice or a silent skip avoids is
    optional, and a node `requires` the nearest tasks every path has done before it. Two
    transitions with one label are refused: the catalog names one node per activity."""
    root = _xml_root(text, "PNML")
    nets = [e for e in root.iter() if _local(e.tag) == "net"]
    if len(nets) != 1:
        raise FlowchartError(f"expected one <net> (a PNML Petri net), found {len(nets)}")
    net = nets[0]
    places: list[str] = []
    transitions: dict[str, str] = {}  # id -> label ("" when silent)
    arcs: list[tuple[str, str]] = []
    marked: dict[str, int] = {}
    order: list[str] = []
    for element in net.iter():
        kind, ident = _local(element.tag), element.get("id")
        if ident is None:  # a reference, such as a final marking's <place idref=...>
            continue
        if kind == "place":
            places.append(ident)
            order.append(ident)
            if tokens := _tokens(element, "initialMarking"):
                marked[ident] = tokens
        elif kind == "transition":
            transitions[ident] = "" if _silent(element) else _text(element, "name")
            order.append(ident)
        elif kind == "arc":
            weight = _tokens(element, "inscription") or 1
            if weight != 1:
                raise FlowchartError(f"arc {ident!r} has weight {weight}: only arcs of weight one can be expressed "
                                     f"in the catalog")
            arc_type = _text(element, "arctype") or "normal"
            if arc_type != "normal":  # PM4Py writes inhibitor and reset arcs so
                raise FlowchartError(f"arc {ident!r} is an {arc_type} arc: only normal arcs can be expressed in the "
                                     f"catalog")
            arcs.append((element.get("source"), element.get("target")))
    if not transitions:
        raise FlowchartError("the net has no transitions")
    place_set = set(places)
    for source, target in arcs:
        if not ((source in place_set and target in transitions) or (source in transitions and target in place_set)):
            raise FlowchartError(f"arc {source} -> {target} does not join a place and a transition of the net")
    finals = [e.get("idref") for marking in net.iter() if _local(marking.tag) == "finalmarkings"
              for e in marking.iter() if _local(e.tag) == "place" and _tokens(e) > 0]
    if not finals:
        finals = [p for p in places if not any(source == p for source, _ in arcs)]
    unknown = [f for f in finals if f not in place_set]
    if unknown:
        raise FlowchartError(f"the final marking names places the net does not have: {unknown}")
    if len(marked) != 1 or next(iter(marked.values())) != 1 or len(finals) != 1:
        raise FlowchartError(f"not a workflow net: expected one place marked with one token at the start and one "
                             f"place that ends the process, found {len(marked)} marked ({sorted(marked)}) and "
                             f"{len(finals)} ending ({sorted(finals)})")
    start, end = next(iter(marked)), finals[0]
    if start == end:
        raise FlowchartError(f"place {start!r} both starts and ends the process")
    if any(source == end for source, _ in arcs):
        raise FlowchartError(f"not a workflow net: the place that ends the process ({end!r}) has output arcs")
    labels: dict[str, str] = {}
    for ident, label in transitions.items():
        if label and label in labels:
            raise FlowchartError(f"transitions {labels[label]!r} and {ident!r} share the label {label!r}: the "
                                 f"catalog has one node per activity")
        labels.setdefault(label, ident)
    inputs = {t: [s for s, target in arcs if target == t] for t in transitions}
    outputs = {t: [target for s, target in arcs if s == t] for t in transitions}
    kinds: dict[str, str] = {}
    names: dict[str, str] = {}
    flows: list[tuple[str, str]] = []
    for ident in order:
        if ident in place_set:
            kinds[ident] = "startEvent" if ident == start else "endEvent" if ident == end else "exclusiveGateway"
            names[ident] = ""
            continue
        if not inputs[ident] or not outputs[ident]:
            raise FlowchartError(f"transition {transitions[ident] or ident!r} has no "
                                 f"{'input' if not inputs[ident] else 'output'} place: it cannot be expressed in "
                                 f"the catalog")
        if not transitions[ident]:
            kinds[ident], names[ident] = "parallelGateway", ""
            flows += [(place, ident) for place in inputs[ident]] + [(ident, place) for place in outputs[ident]]
            continue
        kinds[ident], names[ident] = "task", transitions[ident]
        entry, leave = ident, ident
        if len(inputs[ident]) > 1:  # waits for every input place: a parallel join before the task
            entry = f"{ident}#join"
            kinds[entry], names[entry] = "parallelGateway", ""
            flows.append((entry, ident))
        if len(outputs[ident]) > 1:  # marks every output place: a parallel split after it
            leave = f"{ident}#split"
            kinds[leave], names[leave] = "parallelGateway", ""
            flows.append((ident, leave))
        flows += [(place, entry) for place in inputs[ident]] + [(leave, place) for place in outputs[ident]]
    if any(target == start for _, target in flows):
        raise FlowchartError(f"the start place {start!r} has input arcs")
    return _flow_nodes(kinds, names, flows, strict, id_of=_label_id)


def _silent(transition: ET.Element) -> bool:
    """A silent transition, as ProM marks it (`activity="$invisible$"` on a toolspecific) or as
    PM4Py marks it besides in a stochastic net (`<property key="invisible">true</property>`), on
    any of its toolspecific elements, or one without a label."""
    for tool in (c for c in transition if _local(c.tag) == "toolspecific"):
        if tool.get("activity") == "$invisible$":
            return True
        if any(_local(p.tag) == "property" and p.get("key") == "invisible" and (p.text or "").strip() == "true"
               for p in tool):
            return True
    return not _text(transition, "name")


def _label_id(name: str, used: set[str], element_id: str) -> str:
    """A Petri net's node id: from its label, as an event log names the activity. A label with Latin
    letters as a flowchart's task name (`node_id_for`); one without (受理, 审核) is its own id, since
    the transitions' ids are often random (PM4Py writes a uuid for each) and would change at every
    export."""
    if re.search(r"[A-Za-z]", name):
        return node_id_for(name, used)
    return _unique(re.sub(r"\s+", "_", name.strip()), used)


def _reach(origin: str, edges: dict[str, list[str]], skip: set[tuple[str, str]]) -> set[str]:
    seen = {origin}
    todo = [origin]
    while todo:
        node = todo.pop()
        for nxt in edges[node]:
            if (node, nxt) not in skip and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _topological(order: list[str], succ: dict[str, list[str]], pred: dict[str, list[str]]) -> list[str]:
    remaining = {i: len(pred[i]) for i in order}
    position = {i: n for n, i in enumerate(order)}
    ready = sorted((i for i in order if remaining[i] == 0), key=position.get)
    out = []
    while ready:
        node = ready.pop(0)
        out.append(node)
        for nxt in succ[node]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
                ready.sort(key=position.get)
    return out


def catalog_nodes(nodes: list[FlowNode], accepted: Sequence[str] = (), closed: Sequence[str] = ()) -> list[dict]:
    """The `nodes` list of a catalog item.

    A flowchart cannot say which of its tasks the case's acceptance or closing completes (a
    受理 or 办结 task), so the caller names them, by node id or task name, and they get
    `completed_by: accepted` or `completed_by: closed`. Every other node completes only by its
    own node_completed event."""
    out = [n.to_catalog() for n in nodes]
    for event, names in (("accepted", accepted), ("closed", closed)):
        for name in names:
            for entry in _named(out, name, event):
                if entry.get("completed_by") not in (None, event):
                    raise FlowchartError(f"task {name!r} cannot be completed both by accepted and by closed")
                entry["completed_by"] = event
    return out


def decision_node(entries: list[dict], name: str) -> str:
    """The id of the node, named by id or task name among an item's `nodes` (`catalog_nodes`),
    that the case's decision (`decided`) completes: the item's `decision_node`. A flowchart
    cannot say where the case is decided, and a node the log records as the decision but that
    nothing completes would be a skipped_node red card on every case."""
    by_id = [entry for entry in entries if entry["id"] == name]  # an id before another task's name
    return (by_id or _named(entries, name, "decided"))[0]["id"]


def _named(entries: list[dict], name: str, event: str) -> list[dict]:
    """The entries whose node id or task name is `name`; none is refused, naming the nodes there are."""
    matches = [entry for entry in entries if name in (entry["id"], entry["name"])]
    if not matches:
        raise FlowchartError(f"no task {name!r} in the flowchart to be completed by {event}: its nodes "
                             f"are {[entry['id'] for entry in entries]}")
    return matches
