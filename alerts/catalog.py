"""The power catalog (职权目录): what correct handling of each item is.

`load_catalog` takes the contract's YAML structure (already parsed into plain
Python values) and returns a frozen `Catalog`. Every error names the item or
department and the field, so an operator can fix the file without guessing.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Category(enum.StrEnum):
    LICENSING = "licensing"
    NON_LICENSING_APPROVAL = "non_licensing_approval"
    PENALTY = "penalty"
    ENFORCEMENT = "enforcement"
    LEVY = "levy"
    CONFIRMATION = "confirmation"
    ADJUDICATION = "adjudication"
    INSPECTION = "inspection"
    BENEFIT = "benefit"
    EXPROPRIATION = "expropriation"
    REWARD = "reward"
    OTHER = "other"


class CatalogError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Person:
    """Someone notices go to: a department's head or contact, the inspection office."""
    name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    name: str
    region: str | None = None
    head: Person | None = None  # receives escalation notices
    contact: Person | None = None  # receives new and returned supervision tickets (default: the head)
    self_built: bool = False  # runs its own system and pushes its cases (channel import)

    @property
    def ticket_contact(self) -> Person | None:
        """Who receives new and returned tickets: the contact, or the head when the contact has no
        address (a name alone cannot be sent to)."""
        return self.contact if self.contact is not None and self.contact.email else self.head or self.contact


class CompletedBy(enum.StrEnum):
    """A case event that also completes a node (the contract's `completed_by`)."""
    ACCEPTED = "accepted"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    name: str
    days: int | None
    required: bool
    requires: tuple[str, ...]
    # None: the node completes only by its own node_completed event.
    completed_by: CompletedBy | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    tier: str
    min: float
    max: float

    def contains(self, amount: float) -> bool:
        return self.min <= amount <= self.max


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    name: str
    category: Category
    department: str
    promised_days: int
    nodes: tuple[Node, ...]
    legal_days: int | None = None
    status: str = "active"
    discretion: Mapping[str, tuple[Tier, ...]] = field(default_factory=dict)
    public: Mapping[str, Any] = field(default_factory=dict)
    # The node a decision (`decided`) must not come before the required nodes of: the catalog's
    # `decision_node` (an optional field Sunlight adds), else a node named decide, approve or
    # decision. The decision completes it only when the catalog names it (`decided_completes`):
    # otherwise, as the contract says, only its own node_completed does.
    decision_node: str | None = None
    decided_completes: bool = False
    _plan: "ProcessPlan | None" = field(default=None, compare=False, repr=False)
    _tiers: "dict[str, tuple[Tier, ...]] | None" = field(default=None, compare=False, repr=False)

    def node(self, node_id: str) -> Node | None:
        return self.plan.index.get(node_id)

    def tiers(self, violation: str) -> tuple[Tier, ...]:
        """The benchmark tiers of a violation code (none: no benchmark), the code read as a source
        may write it: spaces around it, and a whole number written as a float (`7.0` for `7`, as a
        spreadsheet or PM4Py writes an integer column with gaps) are the same code. Compared
        character for character, a log whose codes read `7` against a catalog keyed `7.0` (or an
        Excel cell `7.0 `) lost every discretion card without a word (found by a black-box test).
        Nor does letter case tell codes apart when the catalog does not: `v-food-124` is `V-FOOD-124`
        (a fine of 500,000 against a maximum of 100,000 had no card, as of an unknown code: found by a
        black-box test), unless the catalog keys both."""
        exact = self.discretion.get(violation)
        if exact is not None:
            return exact
        index = self._tiers
        if index is None:
            index = {violation_key(code): tiers for code, tiers in self.discretion.items()}
            folded: dict[str, list[tuple[Tier, ...]]] = {}
            for code, tiers in index.items():
                folded.setdefault(code.casefold(), []).append(tiers)
            # Apart from the codes as written (a case-folded key is no code: `ab` and `AB` keyed,
            # `Ab` found `ab`'s by its folded form, found by review).
            index.update({_FOLDED + code: found[0] for code, found in folded.items() if len(found) == 1})
            object.__setattr__(self, "_tiers", index)
        key = violation_key(violation)
        found = index.get(key)
        return found if found is not None else index.get(_FOLDED + key.casefold(), ())

    @property
    def plan(self) -> "ProcessPlan":
        """The process model's relations, worked out once per item (the rules read them per event)."""
        plan = self._plan
        if plan is None:
            plan = ProcessPlan.of(self)
            object.__setattr__(self, "_plan", plan)
        return plan

    def completed_by(self, event: CompletedBy) -> list[Node]:
        """The nodes that acceptance (or closing) completes, as the catalog says on each node."""
        return [n for n in self.nodes if n.completed_by is event]


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    """An item's nodes and how they depend on each other, for reading a case's history fast."""
    index: Mapping[str, Node]
    position: Mapping[str, int]
    roots: tuple[str, ...]  # nodes that require nothing: their clocks start at acceptance
    prerequisites: Mapping[str, tuple[str, ...]]  # every node a node requires, directly or not, earliest first
    waiting_on: Mapping[str, tuple[str, ...]]  # the nodes that require a node, directly or not
    requires: Mapping[str, frozenset[str]]  # the nodes a node requires directly
    by_acceptance: tuple[str, ...]
    by_closing: tuple[str, ...]
    before_closing: tuple[str, ...]  # required nodes closing does not complete, and what the ones it completes require
    before_decision: tuple[str, ...]  # the decision node's prerequisites
    needed: frozenset[str]  # required nodes and every node one of them requires, optional or not

    @classmethod
    def of(cls, item: "Item") -> "ProcessPlan":
        index = {n.id: n for n in item.nodes}
        position = {n.id: i for i, n in enumerate(item.nodes)}
        prerequisites = {}
        for node in item.nodes:
            found: set[str] = set()
            stack = list(node.requires)
            while stack:
                current = stack.pop()
                if current not in found:
                    found.add(current)
                    stack.extend(index[current].requires)
            prerequisites[node.id] = tuple(n.id for n in item.nodes if n.id in found)
        waiting_on = {n.id: tuple(o.id for o in item.nodes if n.id in prerequisites[o.id]) for n in item.nodes}
        by_acceptance = tuple(n.id for n in item.nodes if n.completed_by is CompletedBy.ACCEPTED)
        by_closing = tuple(n.id for n in item.nodes if n.completed_by is CompletedBy.CLOSED)
        # What closing must find done: the required nodes it does not complete itself, and every
        # node that the nodes it completes require, optional or not (as their own event would).
        closing_requires = {p for n in by_closing for p in prerequisites[n]}
        before_closing = tuple(n.id for n in item.nodes
                               if (n.required or n.id in closing_requires) and n.id not in by_closing)
        # What the decision must find done: what its node requires (and what those require), as
        # that node's own completion would. With the default `requires` (the nearest earlier
        # required node), every required node before it; not a parallel branch a flowchart lists
        # before it (a decision made before such a branch raised red cards its node's own event
        # did not: found by a black-box test).
        before_decision: tuple[str, ...] = ()
        if item.decision_node is not None and item.decision_node in index:
            before_decision = prerequisites[item.decision_node]
        return cls(index, position, tuple(n.id for n in item.nodes if not n.requires), prerequisites,
                   waiting_on, {n.id: frozenset(n.requires) for n in item.nodes}, by_acceptance, by_closing,
                   before_closing, before_decision,
                   frozenset(n.id for n in item.nodes if n.required)
                   | {p for n in item.nodes if n.required for p in prerequisites[n.id]})


@dataclass(frozen=True, slots=True)
class Catalog:
    departments: Mapping[str, Department]
    items: Mapping[str, Item]
    timezone: str = "Asia/Shanghai"
    # The discipline-inspection office that receives second-level escalations.
    inspection_office: Person | None = None

    def item(self, code: str) -> Item | None:
        return self.items.get(code)


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise CatalogError(f"{where}: missing required field {key!r}")
    return value


def _days(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(f"{where}: {key} must be a whole number of working days >= 0, got {value!r}")
    return value


def _nodes(raw: Any, where: str) -> tuple[Node, ...]:
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{where}: nodes must be a non-empty list")
    nodes: list[Node] = []
    seen: set[str] = set()
    last_required: str | None = None
    for index, entry in enumerate(raw):
        node_where = f"{where}, node #{index + 1}"
        if not isinstance(entry, dict):
            raise CatalogError(f"{node_where}: must be a mapping with id and name")
        node_id = str(_require(entry, "id", node_where))
        node_where = f"{where}, node {node_id!r}"
        if node_id in seen:
            raise CatalogError(f"{node_where}: duplicate node id")
        name = str(_require(entry, "name", node_where))
        days = entry.get("days")
        if days is not None:
            days = _days(days, node_where, "days")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise CatalogError(f"{node_where}: required must be true or false, got {required!r}")
        requires_raw = entry.get("requires")
        if requires_raw is None:
            requires = (last_required,) if last_required else ()
        else:
            if not isinstance(requires_raw, list):
                raise CatalogError(f"{node_where}: requires must be a list of node ids")
            requires = tuple(str(r) for r in requires_raw)
            for dependency in requires:
                if dependency not in seen:
                    raise CatalogError(f"{node_where}: requires {dependency!r}, which is not an "
                                       f"earlier node of this item")
        completed_by = entry.get("completed_by")
        if completed_by is not None:
            try:
                completed_by = CompletedBy(completed_by)
            except ValueError:
                raise CatalogError(f"{node_where}: completed_by must be accepted or closed, "
                                   f"got {completed_by!r}") from None
        nodes.append(Node(node_id, name, days, required, requires, completed_by))
        seen.add(node_id)
        if required:
            last_required = node_id
    return tuple(nodes)


_WHOLE_FLOAT = re.compile(r"(-?\d+)\.0+")


# The prefix of a violation code's case-folded form in `Item.tiers`'s index: no code begins so.
_FOLDED = "\x00"


def violation_key(code: str) -> str:
    """A violation code as benchmarks are matched by: without spaces around it, and a whole number
    written as a float without its fraction (`7.0` is `7`; `07` stays `07`)."""
    code = code.strip()
    whole = _WHOLE_FLOAT.fullmatch(code)
    return whole.group(1) if whole else code


def _discretion(raw: Any, where: str) -> dict[str, tuple[Tier, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: discretion must map violation codes to tier lists")
    out: dict[str, tuple[Tier, ...]] = {}
    for violation, tiers in raw.items():
        tier_where = f"{where}, discretion {violation!r}"
        if not isinstance(tiers, list) or not tiers:
            raise CatalogError(f"{tier_where}: must be a non-empty list of tiers")
        parsed = []
        for tier in tiers:
            if not isinstance(tier, dict):
                raise CatalogError(f"{tier_where}: each tier needs tier, min and max")
            name = str(_require(tier, "tier", tier_where))
            # An open-ended tier (十万元以上) states one bound: the other is none (before, a tier
            # without `max` refused the whole catalog; found by an independent oracle).
            low, high = tier.get("min"), tier.get("max")
            if low is None and high is None:
                raise CatalogError(f"{tier_where}, tier {name!r}: needs min or max (or both)")
            low = -math.inf if low is None else low
            high = math.inf if high is None else high
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise CatalogError(f"{tier_where}, tier {name!r}: min and max must be numbers")
            if low > high:
                raise CatalogError(f"{tier_where}, tier {name!r}: min {low} is above max {high}")
            parsed.append(Tier(name, float(low), float(high)))
        out[str(violation)] = tuple(parsed)
    return out


# The keys the catalog format has, by where they are (the contract's, and Sunlight's additions:
# decision_node, the ticket policy, office hours). Others are kept by other systems, or misspelt.
_KEYS = {
    "catalog": {"departments", "items", "timezone", "inspection_office", "tickets", "office_hours"},
    "department": {"code", "name", "region", "head", "contact", "self_built"},
    "item": {"code", "name", "category", "department", "promised_days", "legal_days", "status", "nodes",
             "discretion", "public", "decision_node"},
    "node": {"id", "name", "days", "completed_by", "required", "requires"},
    "tier": {"tier", "min", "max"},
}


def unknown_keys(raw: Any) -> list[str]:
    """Where a catalog document has keys the format does not (`discretoin:`, a node's `dyas:`), as
    "item 'X': discretoin": they are not read, so a misspelt one takes away what it meant (a
    benchmark, a time limit) without a word. Said, not refused: other systems may add their own."""
    found: list[str] = []

    def check(entry: Any, kind: str, where: str) -> None:
        if isinstance(entry, dict):
            found.extend(f"{where}: {key}" for key in entry if key not in _KEYS[kind])

    if not isinstance(raw, dict):
        return found
    check(raw, "catalog", "catalog")
    for department in raw.get("departments") or ():
        check(department, "department", f"department {department.get('code')!r}" if isinstance(department, dict)
              else "department")
    for item in raw.get("items") or ():
        if not isinstance(item, dict):
            continue
        where = f"item {item.get('code')!r}"
        check(item, "item", where)
        for node in item.get("nodes") or ():
            check(node, "node", f"{where}, node {node.get('id')!r}" if isinstance(node, dict) else where)
        discretion = item.get("discretion")
        for violation, tiers in (discretion.items() if isinstance(discretion, dict) else ()):
            for tier in tiers if isinstance(tiers, list) else ():
                check(tier, "tier", f"{where}, discretion {violation!r}")
    return found


def load_catalog(raw: Any) -> Catalog:
    """Build a `Catalog` from the parsed YAML document."""
    if not isinstance(raw, dict):
        raise CatalogError("catalog: the document must be a mapping with departments and items")
    departments: dict[str, Department] = {}
    raw_departments = raw.get("departments")
    if raw_departments is None or raw_departments == []:
        # The contract requires them, and every item names one. Without the list (a misspelt key)
        # the catalog was taken, with a warning, and every event naming a department refused: a
        # city's whole feed to the dead letters (found by a black-box test).
        misspelt = difflib.get_close_matches("departments", [key for key in raw if isinstance(key, str)
                                                             and key not in _KEYS["catalog"]], n=1, cutoff=0.8)
        raise CatalogError("catalog: missing required field 'departments' (each department's code and name; every "
                           "item names its department from it)"
                           + (f"; did you mean 'departments' for {misspelt[0]!r}?" if misspelt else ""))
    if not isinstance(raw_departments, list):
        raise CatalogError("catalog: departments must be a list")
    timezone = str(raw.get("timezone") or "Asia/Shanghai")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CatalogError(f"catalog: timezone {timezone!r} is not an IANA timezone name") from None
    for index, entry in enumerate(raw_departments):
        where = f"department #{index + 1}"
        if not isinstance(entry, dict):
            raise CatalogError(f"{where}: must be a mapping")
        code = str(_require(entry, "code", where))
        where = f"department {code!r}"
        if code in departments:  # the last copy won: another region, another head told of escalations
            raise CatalogError(f"{where}: duplicate department code (department #{index + 1} repeats an earlier "
                               f"one; keep one entry per department)")
        region = entry.get("region")
        self_built = entry.get("self_built", False)
        if not isinstance(self_built, bool):
            raise CatalogError(f"{where}: self_built must be true or false, got {self_built!r}")
        departments[code] = Department(code, str(_require(entry, "name", where)),
                                       str(region) if region is not None else None,
                                       _person(entry.get("head"), f"{where}: head"),
                                       _person(entry.get("contact"), f"{where}: contact"), self_built)
    items: dict[str, Item] = {}
    raw_items = raw.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise CatalogError("catalog: items must be a non-empty list")
    for index, entry in enumerate(raw_items):
        where = f"item #{index + 1}"
        if not isinstance(entry, dict):
            raise CatalogError(f"{where}: must be a mapping")
        code = str(_require(entry, "code", where))
        where = f"item {code!r}"
        if code in items:
            raise CatalogError(f"{where}: duplicate item code")
        try:
            category = Category(_require(entry, "category", where))
        except ValueError:
            raise CatalogError(f"{where}: category {entry.get('category')!r} is not one of "
                               f"{[c.value for c in Category]}") from None
        department = str(_require(entry, "department", where))
        if department not in departments:
            raise CatalogError(f"{where}: department {department!r} is not in departments")
        if "promised_days" not in entry:
            raise CatalogError(f"{where}: missing required field 'promised_days'")
        promised = _days(entry["promised_days"], where, "promised_days")
        legal = entry.get("legal_days")
        status = entry.get("status", "active")
        if status not in ("active", "suspended"):
            raise CatalogError(f"{where}: status must be active or suspended, got {status!r}")
        nodes = _nodes(entry.get("nodes"), where)
        decision_node = entry.get("decision_node")
        if decision_node is None:
            decision_node = (next((n.id for n in nodes if n.id in _DECISION_IDS), None)
                             or next((n.id for n in nodes if _decides(n)), None))
        elif decision_node not in {n.id for n in nodes}:
            raise CatalogError(f"{where}: decision_node {decision_node!r} is not one of its nodes")
        public = entry.get("public") or {}
        if not isinstance(public, dict):
            raise CatalogError(f"{where}: public must be a mapping of published fields")
        items[code] = Item(
            code=code, name=str(_require(entry, "name", where)), category=category,
            department=department, promised_days=promised, nodes=nodes,
            legal_days=_days(legal, where, "legal_days") if legal is not None else None,
            status=status, discretion=_discretion(entry.get("discretion"), where), public=public,
            decision_node=decision_node, decided_completes=entry.get("decision_node") is not None,
        )
    return Catalog(departments=departments, items=items, timezone=timezone,
                   inspection_office=_person(raw.get("inspection_office"), "catalog: inspection_office"))


# A node where the case is decided, when the catalog does not name it (`decision_node`): by its id in
# English, else by its name as Chinese catalogs write it (before, ids alone: a catalog with pinyin or
# numbered ids had no decision node, and a penalty decided before its investigation raised no card;
# found by a black-box test). Names exactly, or 作出…决定 but the acceptance's or the filing's: a
# node picked after the decision would have every case decided "before" the steps between them,
# a false red card each (结案审批, 归档审批, 执行处罚决定 and 告知拟作出的决定 are not where the decision
# is made; found by a review), and one picked before it only misses cards.
_DECISION_IDS = frozenset({"decide", "approve", "decision"})
_DECISION_NAMES = frozenset({"决定", "审批", "批准", "核准", "审定", "处罚决定", "行政处罚决定", "许可决定", "审批决定",
                             "审查决定", "集体讨论决定"})
_DECISION_NAME = re.compile(r"作出(?!受理|不予受理|立案)\S{0,10}决定")


def _decides(node: Node) -> bool:
    name = "".join(node.name.split())
    return name in _DECISION_NAMES or bool(_DECISION_NAME.fullmatch(name))


# One mailbox, as `local@domain`: no list (a comma or semicolon between two), no display name or angle
# brackets, no space or line break; one @, with a part before it and a domain of dot-separated
# labels after it. Letters beyond ASCII are taken (an internationalised address).
_NOT_IN_AN_ADDRESS = r'\s@,;<>()\[\]"\\:，；、＜＞《》（）【】：'  # and their full-width forms, as typed in Chinese
_MAIL_ADDRESS = re.compile(rf"[^{_NOT_IN_AN_ADDRESS}]+@[^{_NOT_IN_AN_ADDRESS}.]+(?:\.[^{_NOT_IN_AN_ADDRESS}.]+)*")


def is_mail_address(value: Any) -> bool:
    """Whether `value` is one mail address (`_MAIL_ADDRESS`). Before, a catalog took "a@x.cn,
    b@y.cn" (every notice of the department went to both), "a@b@x.cn" (tried ten times as if the
    mail server were down) and a name with its address in angle brackets (found by a black-box
    test)."""
    return isinstance(value, str) and _MAIL_ADDRESS.fullmatch(value) is not None


def _person(raw: Any, where: str) -> Person | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CatalogError(f"{where} must be a mapping with name and email")
    email = raw.get("email")
    if email is not None and not is_mail_address(email):
        raise CatalogError(f"{where}: email {email!r} is not one mail address: write one address, as "
                           f"name@domain (no list, no name or angle brackets, no spaces)")
    return Person(str(raw.get("name") or ""), email)
