"""Monthly performance scoring (绩效考核): the rulebook, what people supply, and the scores.

Pure: the rulebook and the month's input file come in as parsed YAML, the month's facts as
plain values gathered from the store (`sinks.scoring_inputs`); out come frozen results that a
person can check number by number. The formulas are the rulebook's (default: the Wuxi rules,
`alerts/rulebooks/wuxi.yaml`, as written); each part's score is its formula's value kept between
0 and its points. Arithmetic is exact (fractions) and each part is rounded half-up to 0.01, as
the office publishes it; the total is the sum of the rounded parts.

A part with nothing to count (0 of 0: no tickets, no ratings, no cases) gets its full points
and is marked `no_data`. A subject (department or region) with no case of the month
is scored but not ranked: it is listed separately, as the rules say.
"""

from __future__ import annotations

import math
import re
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from alerts.catalog import Catalog, Category, Item
from alerts.events import RATINGS


class ScoringError(ValueError):
    """A rulebook or a month's input file that cannot be used; the message says where and why."""


# --- the rulebook ---------------------------------------------------------------------------------

# The parameters each kind of part takes (its formula is fixed by the kind).
PART_KINDS: dict[str, tuple[str, ...]] = {
    "coverage": ("factor",),
    "publication": ("base", "per"),
    "operation": ("factor", "per"),
    "maintenance": ("base", "per"),
    "conformity": ("factor",),
    "supervision": ("factor",),
    "data_exchange": ("base", "late", "nonstandard"),
    "rating": ("factor",),
    "other": ("base",),
}
FORMULAS = {
    "coverage": "{factor} × 实施部门数/(范围内部门数−垂管部门数)",
    "publication": "{base} − {per} × n（空缺项数）",
    "operation": "{factor} × min(在线办件事项数/(总静态事项数−挂起事项数), 1) − {per} × m",
    "maintenance": "{base} − {per} × p（未及时调整变更数）",
    "conformity": "{factor} × (1 − 告警办件数/全部办件数)",
    "supervision": "{factor} × 已回复、处理的督办件数/全部督办件数",
    "data_exchange": "{base} − {late}（未按时推送） − {nonstandard}（数据不符合规范）",
    "rating": "{factor} × (满意+基本满意)/全部评议数",
    "other": "{base} − 投诉、暗访扣分",
}
ATTACHMENTS = ("department", "region")
SUBJECT_TITLE = {"department": "部门", "region": "地区"}


@dataclass(frozen=True)
class Requirement:
    """One published-data requirement of 权力公开, met by the item's `public` field `field`."""
    name: str
    field: str


@dataclass(frozen=True)
class FieldGroup:
    name: str
    categories: tuple[Category, ...]
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True)
class PartRule:
    key: str
    title: str
    points: Fraction  # the part's worth: its score is kept between 0 and this
    params: Mapping[str, Fraction] = field(default_factory=dict)

    def param(self, name: str) -> Fraction:
        return self.params[name]

    @property
    def formula_max(self) -> Fraction:
        """What the formula gives at best (a perfect month)."""
        return self.params.get("factor", self.params.get("base", Fraction(0)))

    @property
    def formula(self) -> str:
        return FORMULAS[self.key].format(**{k: number_text(v) for k, v in self.params.items()})


@dataclass(frozen=True)
class Attachment:
    key: str  # department | region
    title: str
    parts: tuple[PartRule, ...]


@dataclass(frozen=True)
class Rulebook:
    name: str
    source: str
    city_region: str | None
    push_day: int
    field_groups: tuple[FieldGroup, ...]
    attachments: Mapping[str, Attachment]
    region_names: Mapping[str, str] = field(default_factory=dict)  # region code -> name (滨湖区 ...)

    def group_of(self, category: Category) -> FieldGroup:
        for group in self.field_groups:
            if category in group.categories:
                return group
        raise ScoringError(f"rulebook: no field group covers category {category.value!r}")

    def inconsistencies(self, only: str | None = None) -> list[str]:
        """Parts whose formula cannot reach their points, or can exceed them (of one attachment with `only`)."""
        out = []
        for attachment in self.attachments.values():
            if only is not None and attachment.key != only:
                continue
            for part in attachment.parts:
                best = part.formula_max
                if best != part.points:
                    out.append(f"{attachment.title} {part.title}: worth {number_text(part.points)} points, but its "
                               f"formula ({part.formula}) gives at most {number_text(best)}")
        return out


def number_text(value: Fraction | Decimal | float | int) -> str:
    text = format(Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction)
                  else Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# Above any score or count a month can hold; keeps every figure within what is stored (64 bits).
LARGEST = 1_000_000_000


def _fraction(value: Any, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScoringError(f"{where}: must be a number, got {value!r}")
    if value < 0:
        raise ScoringError(f"{where}: must not be negative, got {value!r}")
    if value > LARGEST:
        raise ScoringError(f"{where}: must be at most {LARGEST:,}, got {value!r}")
    return Fraction(str(value))


def _keys(raw: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ScoringError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def load_rulebook(raw: Any) -> Rulebook:
    """Build a `Rulebook` from the parsed YAML document; every error names the part and field."""
    if not isinstance(raw, dict):
        raise ScoringError("rulebook: the document must be a mapping with field_groups and attachments")
    _keys(raw, {"name", "source", "city_region", "region_names", "push_day", "field_groups", "attachments"}, "rulebook")
    region_names = raw.get("region_names") or {}
    if not isinstance(region_names, dict):
        raise ScoringError("rulebook: region_names must map region codes to names")
    push_day = raw.get("push_day", 5)
    if isinstance(push_day, bool) or not isinstance(push_day, int) or not 1 <= push_day <= 28:
        raise ScoringError(f"rulebook: push_day must be a day of the month from 1 to 28, got {push_day!r}")
    groups_raw = raw.get("field_groups")
    if not isinstance(groups_raw, dict) or not groups_raw:
        raise ScoringError("rulebook: field_groups must map each group (许可, 处罚 ...) to its categories "
                           "and requirements")
    groups, covered = [], {}
    for name, entry in groups_raw.items():
        where = f"rulebook: field group {name!r}"
        if not isinstance(entry, dict):
            raise ScoringError(f"{where}: must be a mapping with categories and requirements")
        _keys(entry, {"categories", "requirements"}, where)
        categories = []
        listed = entry.get("categories") or []
        if not isinstance(listed, list):
            raise ScoringError(f"{where}: categories must be a list (e.g. [licensing]), got {listed!r}")
        for value in listed:
            try:
                category = Category(value)
            except ValueError:
                raise ScoringError(f"{where}: category {value!r} is not one of "
                                   f"{[c.value for c in Category]}") from None
            if category in covered:
                raise ScoringError(f"{where}: category {value!r} is already in group {covered[category]!r}")
            covered[category] = name
            categories.append(category)
        requirements = []
        raw_requirements = entry.get("requirements")
        if not isinstance(raw_requirements, list) or not raw_requirements:
            raise ScoringError(f"{where}: requirements must be a non-empty list")
        for requirement in raw_requirements:
            if isinstance(requirement, str) and requirement:
                requirements.append(Requirement(requirement, requirement))
            elif isinstance(requirement, dict) and set(requirement) <= {"name", "field"} and requirement.get("name") \
                    and requirement.get("field"):
                requirements.append(Requirement(str(requirement["name"]), str(requirement["field"])))
            else:
                raise ScoringError(f"{where}: a requirement is a field name or {{name, field}}, got {requirement!r}")
        groups.append(FieldGroup(str(name), tuple(categories), tuple(requirements)))
    missing = [c.value for c in Category if c not in covered]
    if missing:
        raise ScoringError(f"rulebook: field_groups cover no group for category(ies) {', '.join(missing)}: "
                           f"every one of the catalog's twelve categories needs its group")
    attachments_raw = raw.get("attachments")
    if not isinstance(attachments_raw, dict) or not attachments_raw:
        raise ScoringError("rulebook: attachments must hold department and/or region")
    _keys(attachments_raw, set(ATTACHMENTS), "rulebook: attachments")
    attachments = {}
    for key, entry in attachments_raw.items():
        where = f"rulebook: attachment {key}"
        if not isinstance(entry, dict) or not isinstance(entry.get("parts"), list) or not entry["parts"]:
            raise ScoringError(f"{where}: needs a title and a non-empty list of parts")
        _keys(entry, {"title", "parts"}, where)
        parts, seen = [], set()
        for index, part in enumerate(entry["parts"]):
            part_where = f"{where}, part #{index + 1}"
            if not isinstance(part, dict) or part.get("key") not in PART_KINDS:
                raise ScoringError(f"{part_where}: key must be one of {', '.join(PART_KINDS)}, "
                                   f"got {part.get('key') if isinstance(part, dict) else part!r}")
            kind = part["key"]
            part_where = f"{where}, part {kind}"
            if kind in seen:
                raise ScoringError(f"{part_where}: appears twice")
            if kind == "coverage" and key == "department":
                raise ScoringError(f"{part_where}: 部门覆盖 scores a region's departments; a department has none")
            seen.add(kind)
            needed = PART_KINDS[kind]
            _keys(part, {"key", "title", "points", *needed}, part_where)
            absent = [n for n in ("title", "points", *needed) if part.get(n) is None]
            if absent:
                raise ScoringError(f"{part_where}: missing {', '.join(absent)}")
            points = _fraction(part["points"], f"{part_where}: points")
            params = {n: _fraction(part[n], f"{part_where}: {n}") for n in needed}
            parts.append(PartRule(kind, str(part["title"]), points, params))
        total = sum(p.points for p in parts)
        if total != 100:
            raise ScoringError(f"{where}: the parts' points add up to {number_text(total)}, not 100 (百分制)")
        attachments[key] = Attachment(key, str(entry.get("title") or key), tuple(parts))
    city_region = raw.get("city_region")
    return Rulebook(str(raw.get("name") or "rulebook"), str(raw.get("source") or ""),
                    str(city_region) if city_region is not None else None, push_day, tuple(groups), attachments,
                    {str(k): str(v) for k, v in region_names.items()})


# --- what people supply -----------------------------------------------------------------------------

MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)


def parse_month(text: str) -> str:
    # The whole text, ASCII digits only: `$` let a trailing newline through and \d took full-width
    # digits, each stored as a month key of its own beside the real one.
    match = MONTH.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ScoringError(f"month must be YYYY-MM (e.g. 2026-04), got {text!r}")
    if not 2000 <= int(match.group(1)) <= 2099:  # a typo, not a month of online operation (stored, else)
        raise ScoringError(f"month {text} is outside 2000-01 to 2099-12: a typo?")
    return text


@dataclass(frozen=True)
class Complaint:
    points: Fraction
    reason: str


@dataclass(frozen=True)
class Coverage:
    """部门覆盖: departments in the online-running scope, of them vertically managed (垂管), and
    those running online."""
    in_scope: int
    vertical: int
    online: int


@dataclass(frozen=True)
class SubjectInputs:
    spot_checks: int = 0  # m: cases found not run online (专项检查、随机抽查、举报)
    unapplied_changes: int = 0  # p: catalog changes not applied in time
    complaints: tuple[Complaint, ...] = ()
    coverage: Coverage | None = None  # regions only


@dataclass(frozen=True)
class MonthInputs:
    month: str
    departments: Mapping[str, SubjectInputs] = field(default_factory=dict)
    regions: Mapping[str, SubjectInputs] = field(default_factory=dict)

    def of(self, attachment: str, code: str) -> SubjectInputs:
        table = self.departments if attachment == "department" else self.regions
        return table.get(code, SubjectInputs())


def _count(value: Any, where: str) -> int:
    if isinstance(value, float) and value.is_integer():  # 1.0 is a whole number (a spreadsheet writes it so)
        value = int(value)
    if value is None:  # (a key with nothing after it, or none at all: "got None" read as a bug)
        raise ScoringError(f"{where}: missing: a whole number from 0 to {LARGEST:,}")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LARGEST:
        raise ScoringError(f"{where}: must be a whole number from 0 to {LARGEST:,}, got {value!r}")
    return value


def load_inputs(raw: Any, catalog: Catalog, month: str) -> MonthInputs:
    """The month's input file (parsed YAML), checked against the catalog and the month scored."""
    if not isinstance(raw, dict):
        raise ScoringError("inputs: the document must be a mapping with month, departments and/or regions")
    _keys(raw, {"month", "departments", "regions"}, "inputs")
    stated = raw.get("month")
    if stated is None:
        raise ScoringError("inputs: missing month (YYYY-MM): the file is for one month")
    if str(stated) != month:
        shown = f"'{stated}'" if not isinstance(stated, str) else repr(stated)  # a date YAML read: as written
        raise ScoringError(f"inputs: the file is for month {shown}, but {month} is being scored"
                           + (" (write the month as YYYY-MM)" if not isinstance(stated, str) else ""))
    known_regions = {d.region for d in catalog.departments.values() if d.region}
    out: dict[str, dict[str, SubjectInputs]] = {"departments": {}, "regions": {}}
    for section, known, label in (("departments", set(catalog.departments), "department"),
                                  ("regions", known_regions, "region")):
        entries = raw.get(section) or {}
        if not isinstance(entries, dict):
            raise ScoringError(f"inputs: {section} must map {label} codes to their inputs")
        for code, entry in entries.items():
            code = str(code)
            where = f"inputs: {label} {code}"
            if code not in known:
                raise ScoringError(f"{where}: unknown {label}; the catalog has {', '.join(sorted(known)) or 'none'}")
            if not isinstance(entry, dict):
                raise ScoringError(f"{where}: must be a mapping (spot_checks, unapplied_changes, complaints"
                                   f"{', coverage' if label == 'region' else ''})")
            allowed = {"spot_checks", "unapplied_changes", "complaints"} | ({"coverage"} if label == "region" else set())
            _keys(entry, allowed, where)
            complaints = []
            raw_complaints = entry.get("complaints") or []
            if not isinstance(raw_complaints, list):
                raise ScoringError(f"{where}: complaints must be a list of {{points, reason}}")
            for number, complaint in enumerate(raw_complaints, start=1):
                complaint_where = f"{where}, complaint #{number}"
                if not isinstance(complaint, dict):
                    raise ScoringError(f"{complaint_where}: must be a mapping with points and reason")
                _keys(complaint, {"points", "reason"}, complaint_where)
                if not str(complaint.get("reason") or "").strip():  # "   " is no reason either
                    raise ScoringError(f"{complaint_where}: a deduction needs its reason")
                points = _fraction(complaint.get("points"), f"{complaint_where}: points")
                if points == 0:
                    raise ScoringError(f"{complaint_where}: points must be above 0")
                complaints.append(Complaint(points, str(complaint["reason"])))
            coverage = None
            if entry.get("coverage") is not None:
                raw_coverage = entry["coverage"]
                cov_where = f"{where}, coverage"
                if not isinstance(raw_coverage, dict):
                    raise ScoringError(f"{cov_where}: must be a mapping with in_scope, vertical and online")
                _keys(raw_coverage, {"in_scope", "vertical", "online"}, cov_where)
                in_scope, vertical, online = (_count(raw_coverage.get(k), f"{cov_where}: {k}")
                                              for k in ("in_scope", "vertical", "online"))
                if vertical > in_scope:
                    raise ScoringError(f"{cov_where}: vertical ({vertical}) is more than in_scope ({in_scope})")
                if online > in_scope - vertical:
                    raise ScoringError(f"{cov_where}: online ({online}) is more than in_scope − vertical "
                                       f"({in_scope - vertical})")
                coverage = Coverage(in_scope, vertical, online)
            out[section][code] = SubjectInputs(
                _count(entry.get("spot_checks", 0), f"{where}: spot_checks"),
                _count(entry.get("unapplied_changes", 0), f"{where}: unapplied_changes"),
                tuple(complaints), coverage)
    return MonthInputs(month, out["departments"], out["regions"])


# --- the month's facts, from the store ------------------------------------------------------------

def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first and the next month's first moment, local time (aware)."""
    year, number = (int(x) for x in parse_month(month).split("-"))
    start = datetime(year, number, 1, tzinfo=tz)
    following = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=tz)
    return start, following


def push_deadline(month: str, push_day: int, tz: ZoneInfo) -> datetime:
    """The end (24:00 local) of `push_day` of the next month: a month's pushes are on time up to
    it, that moment included (as the backfill rule's `CaseView.push_limit`), late after it."""
    _, following = month_bounds(month, tz)
    day = min(push_day, monthrange(following.year, following.month)[1])
    return following.replace(day=day) + timedelta(days=1)


@dataclass(frozen=True)
class CaseFact:
    """A case of the month: accepted in it, or never accepted and first handled in it."""
    case_id: str
    item_code: str
    department: str
    region: str


@dataclass(frozen=True)
class TicketFact:
    """A supervision ticket opened in the month, as it stands now."""
    ticket_id: str
    department: str
    region: str
    status: str


@dataclass(frozen=True)
class RatingFact:
    """A `rated` event that occurred in the month; the facts come in each case's order (occurred_at,
    then event_id), so that a case's first rating is its first fact."""
    event_id: str
    department: str
    region: str
    rating: str
    case_id: str = ""  # "": a case of its own
    rated_before: bool = False  # the case had a rating in an earlier month: this one is a repeat (一事一评)


@dataclass(frozen=True)
class PushFact:
    """A department's import-channel events that occurred in the month, and the last push."""
    department: str
    events: int
    last_recorded_at: datetime


@dataclass(frozen=True)
class EnteredFact:
    """A department's events of the month registered online or at a window, and the first of them."""
    department: str
    events: int
    first_recorded_at: datetime


@dataclass(frozen=True)
class LetterFact:
    """A dead letter about the month's data (its event occurred in the month). `pushed_at`: when it
    was pushed, as its event states (`recorded_at`, as a push's), else when it was received; None:
    not known, not late."""
    letter_id: str
    department: str
    region: str
    pushed_at: datetime | None = None


@dataclass(frozen=True)
class MonthFacts:
    month: str
    cases: tuple[CaseFact, ...] = ()
    irregular_cases: frozenset[str] = frozenset()  # of those, cases with a standing yellow or red alert
    tickets: tuple[TicketFact, ...] = ()
    ratings: tuple[RatingFact, ...] = ()
    pushes: tuple[PushFact, ...] = ()
    letters: tuple[LetterFact, ...] = ()
    # When the store was read (None: not known): whether the month's push day has passed.
    as_of: datetime | None = None
    # A department's events of the month registered online or at a window (填报 into the online
    # system): a self-built department's data entered so by the push day is there.
    entered: tuple[EnteredFact, ...] = ()


DONE_TICKETS = frozenset({"replied", "closed"})  # 已回复、处理
COUNTED_TICKETS = frozenset({"open", "returned", "replied", "closed"})  # not settling, not withdrawn
SATISFIED = frozenset({"satisfied", "basically_satisfied"})  # of the contract's RATINGS


# --- results ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartScore:
    key: str
    title: str
    max: float  # the part's points
    points: float  # what the subject scored
    inputs: Mapping[str, Any]
    formula: str
    no_data: bool = False
    note: str = ""  # 无数据 / 不适用 / 未报送, in words

    def as_json(self) -> dict[str, Any]:
        out = {"title": self.title, "points": self.points, "max": self.max, "inputs": dict(self.inputs),
               "formula": self.formula, "no_data": self.no_data}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class SubjectScore:
    attachment: str  # department | region
    code: str
    name: str
    department: str  # the department's code ('' for a region)
    region: str
    cases: int
    total: float
    parts: tuple[PartScore, ...]
    rank: int | None  # None: no case this month, listed separately

    @property
    def ranked(self) -> bool:
        return self.rank is not None

    def as_json(self, month: str) -> dict[str, Any]:
        return {"month": month, self.attachment: self.code, "name": self.name,
                **({"region": self.region} if self.attachment == "department" else {}),
                "rank": self.rank, "ranked": self.ranked, "cases": self.cases, "total": self.total,
                "parts": {p.key: p.as_json() for p in self.parts}}


@dataclass(frozen=True)
class MonthScores:
    month: str
    attachment: str
    title: str
    rulebook: str
    ranked: tuple[SubjectScore, ...]
    unranked: tuple[SubjectScore, ...]  # no case this month: not ranked (单独列出)
    part_titles: tuple[tuple[str, str, float], ...]  # (key, title, points) in the rulebook's order
    # Scored before the month ended: what the store held until then (a provisional score, 暂计).
    provisional_as_of: datetime | None = None
    inputs_given: bool = True  # False: no spot checks, unapplied changes, complaints nor coverage supplied
    # Scored after the month, before its push day ended: self-built departments may still push it.
    pushes_due_by: datetime | None = None

    @property
    def all(self) -> tuple[SubjectScore, ...]:
        return self.ranked + self.unranked


def _round(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _clamp(value: Fraction, top: Fraction) -> Fraction:
    return max(Fraction(0), min(top, value))


def missing_requirements(item: Item, rulebook: Rulebook) -> list[str]:
    """The requirements of the item's group that its published fields do not meet."""
    group = rulebook.group_of(item.category)
    return [r.name for r in group.requirements if _empty(item.public.get(r.field))]


def _empty(value: Any) -> bool:
    """Not published: absent, empty, or said not to be (`false`, as YAML also reads `no`: before,
    `流程图: no` counted as a published flowchart; found by an independent scorer)."""
    return value is None or value is False or (isinstance(value, (str, list, dict, tuple)) and not (
        value.strip() if isinstance(value, str) else value))


@dataclass(frozen=True)
class _Subject:
    attachment: str
    code: str
    name: str
    department: str
    region: str
    departments: frozenset[str]


def subjects(catalog: Catalog, rulebook: Rulebook, attachment: str) -> list[_Subject]:
    """Who is scored: city departments (the rulebook's `city_region`, and a department without a
    region, which no district holds; every department when the catalog has none there) or regions
    (every region but the city's own; a catalog of the city's departments only has none to rank)."""
    departments = sorted(catalog.departments.values(), key=lambda d: d.code)
    if attachment == "department":
        # A city_region no department is in (`city_region_unknown`): every department, as its warning
        # says (before, only those without a region were scored when there were some: found by a
        # black-box test).
        in_city = bool(rulebook.city_region) and any(d.region == rulebook.city_region for d in departments)
        chosen = [d for d in departments if d.region in (rulebook.city_region, None, "")] if in_city else departments
        return [_Subject("department", d.code, d.name, d.code, d.region or "", frozenset({d.code})) for d in chosen]
    regions = sorted({d.region for d in departments if d.region})
    chosen_regions = [r for r in regions if r != rulebook.city_region]
    if not chosen_regions and regions:  # the city alone is no 市(县)区
        raise ScoringError(f"the catalog places every department in the city's own region ({rulebook.city_region}): "
                           f"no 市(县)区 to score by region (the city departments are scored with --by department)")
    return [_Subject("region", r, r, "", r, frozenset(d.code for d in departments if d.region == r))
            for r in chosen_regions]


def city_region_unknown(catalog: Catalog, rulebook: Rulebook) -> str | None:
    """A warning when the rulebook's `city_region` is no region of the catalog's departments (a
    rulebook of another city, or a typing error): then every department is scored as a city
    department, and every region as a 市(县)区."""
    regions = sorted({d.region for d in catalog.departments.values() if d.region})
    if rulebook.city_region and regions and rulebook.city_region not in regions:
        return (f"the rulebook's city_region {rulebook.city_region} is no region of the catalog "
                f"({', '.join(regions)}): every department is scored as a city department, every region "
                f"as a 市(县)区")
    return None


def check_inputs_scored(inputs: MonthInputs, catalog: Catalog, rulebook: Rulebook) -> None:
    """Refuse inputs that no attachment would use: a department that attachment 2 does not score (a
    region's department is scored with its region), a region that attachment 1 does not score (the
    city's own). Accepted, their spot checks or deductions were lost without a word."""
    scored = {attachment: {s.code for s in subjects(catalog, rulebook, attachment)}
              for attachment, given in (("department", inputs.departments), ("region", inputs.regions))
              if given and attachment in rulebook.attachments}
    for code in inputs.departments:
        if "department" in rulebook.attachments and code not in scored["department"]:
            region = catalog.departments[code].region
            where = (f"it belongs to region {region}, which is scored as a whole: give its inputs under "
                     f"regions: {region}") if region else "it has no region in the catalog"
            raise ScoringError(f"inputs: department {code} is not scored by the city departments' attachment ({where})")
    for code in inputs.regions:
        if "region" in rulebook.attachments and code not in scored["region"]:
            raise ScoringError(f"inputs: region {code} is not scored by the regions' attachment (it is the city's "
                               f"own; the city departments are scored one by one): give the inputs under "
                               f"departments")


def score_month(rulebook: Rulebook, attachment: str, catalog: Catalog, facts: MonthFacts,
                inputs: MonthInputs | None = None) -> MonthScores:
    """Every subject's parts and total for the month, ranked (ties share a rank)."""
    if attachment not in rulebook.attachments:
        raise ScoringError(f"the rulebook has no attachment {attachment!r} (it has {', '.join(rulebook.attachments)})")
    inputs_given = inputs is not None
    inputs = inputs or MonthInputs(facts.month)
    if inputs.month != facts.month:
        raise ScoringError(f"inputs are for {inputs.month}, facts for {facts.month}")
    tz = ZoneInfo(catalog.timezone)
    rules = rulebook.attachments[attachment]
    scored = []
    for subject in subjects(catalog, rulebook, attachment):
        if subject.attachment == "region" and subject.code in rulebook.region_names:
            subject = _Subject(subject.attachment, subject.code, rulebook.region_names[subject.code],
                               subject.department, subject.region, subject.departments)
        scored.append(_score_subject(rulebook, rules, catalog, subject, facts, inputs.of(attachment, subject.code), tz))
    ranked = sorted((s for s in scored if s.cases), key=lambda s: (-s.total, s.code))
    out, previous, rank = [], None, 0
    for position, subject in enumerate(ranked, start=1):
        if subject.total != previous:
            rank, previous = position, subject.total
        out.append(_with_rank(subject, rank))
    unranked = tuple(sorted((s for s in scored if not s.cases), key=lambda s: s.code))
    _, month_end = month_bounds(facts.month, tz)
    # Over, but a self-built department may still push the month until its push day (附件2: 每月5日前
    # 推送上月办件数据): its cases, cards and ratings may yet come. Scored then, the title read as
    # final (found by a black-box test); it is provisional until that day ends.
    pushes_due = push_deadline(facts.month, rulebook.push_day, tz)
    awaiting = (facts.as_of is not None and month_end <= facts.as_of <= pushes_due
                and any(department.self_built for department in catalog.departments.values()))
    provisional = facts.as_of if facts.as_of is not None and (facts.as_of < month_end or awaiting) else None
    return MonthScores(facts.month, attachment, rules.title, rulebook.name, tuple(out), unranked,
                       tuple((p.key, p.title, float(p.points)) for p in rules.parts), provisional, inputs_given,
                       pushes_due if awaiting else None)


def _with_rank(subject: SubjectScore, rank: int) -> SubjectScore:
    return SubjectScore(subject.attachment, subject.code, subject.name, subject.department, subject.region,
                        subject.cases, subject.total, subject.parts, rank)


def _belongs(subject: _Subject, department: str, region: str, catalog: Catalog) -> bool:
    if department in subject.departments:
        return True
    # A department the catalog does not know counts in the region its events name.
    return subject.attachment == "region" and department not in catalog.departments and region == subject.code


def _score_subject(rulebook: Rulebook, rules: Attachment, catalog: Catalog, subject: _Subject,
                   facts: MonthFacts, supplied: SubjectInputs, tz: ZoneInfo) -> SubjectScore:
    def mine(fact) -> bool:
        return _belongs(subject, fact.department, fact.region, catalog)

    items = sorted((i for i in catalog.items.values() if i.department in subject.departments), key=lambda i: i.code)
    cases = [c for c in facts.cases if mine(c)]
    parts = []
    for rule in rules.parts:
        parts.append(_score_part(rule, rulebook, catalog, subject, items, cases, facts, supplied, tz, mine))
    total = sum(Decimal(str(p.points)) for p in parts)
    return SubjectScore(subject.attachment, subject.code, subject.name, subject.department, subject.region,
                        len(cases), float(total), tuple(parts), None)


def _rate(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def _score_part(rule: PartRule, rulebook: Rulebook, catalog: Catalog, subject: _Subject, items: list[Item],
                cases: list[CaseFact], facts: MonthFacts, supplied: SubjectInputs, tz: ZoneInfo, mine) -> PartScore:
    p = rule.params
    no_data, note = False, ""
    inputs: dict[str, Any]
    if rule.key == "coverage":
        coverage = supplied.coverage
        if coverage is None:
            value, no_data, note = p["factor"], True, "未报送部门覆盖数据"
            inputs = {"in_scope": None, "vertical": None, "online": None}
        else:
            inputs = {"in_scope": coverage.in_scope, "vertical": coverage.vertical, "online": coverage.online}
            rate = _rate(coverage.online, coverage.in_scope - coverage.vertical)
            value = p["factor"] * rate if rate is not None else p["factor"]
            no_data = rate is None
    elif rule.key == "publication":
        missing = {i.code: missing_requirements(i, rulebook) for i in items}
        n = sum(len(v) for v in missing.values())
        inputs = {"items": len(items), "missing": n, "missing_by_item": {k: v for k, v in missing.items() if v}}
        value = p["base"] - p["per"] * n
    elif rule.key == "operation":
        suspended = sum(1 for i in items if i.status == "suspended")
        # The rate is taken over the items that are to run (总静态事项数 − 挂起事项数), the numerator
        # too: the cases of a suspended item do not stand for an item that never ran online.
        running = {i.code for i in items if i.status != "suspended"}
        with_cases = len({c.item_code for c in cases if c.item_code in running})
        m = supplied.spot_checks
        inputs = {"items_with_cases": with_cases, "static_items": len(items), "suspended_items": suspended,
                  "spot_checks": m}
        rate = _rate(with_cases, len(items) - suspended)
        if rate is None:
            no_data = True
            value = p["factor"] - p["per"] * m
        else:
            # 本部分基础得分 = factor × rate; 得分 = 基础得分 − per × m.
            inputs["rate"] = float(_round(rate * 100) / 100)  # 0.6667, not 0.6667000000000001
            value = p["factor"] * rate - p["per"] * m
    elif rule.key == "maintenance":
        inputs = {"unapplied_changes": supplied.unapplied_changes}
        value = p["base"] - p["per"] * supplied.unapplied_changes
    elif rule.key == "conformity":
        irregular = sum(1 for c in cases if c.case_id in facts.irregular_cases)
        inputs = {"cases_with_alerts": irregular, "cases": len(cases)}
        rate = _rate(irregular, len(cases))
        no_data = rate is None
        value = p["factor"] if no_data else p["factor"] * (1 - rate)
    elif rule.key == "supervision":
        tickets = [t for t in facts.tickets if mine(t) and t.status in COUNTED_TICKETS]
        done = sum(1 for t in tickets if t.status in DONE_TICKETS)
        inputs = {"tickets_done": done, "tickets": len(tickets)}
        rate = _rate(done, len(tickets))
        no_data = rate is None
        value = p["factor"] if no_data else p["factor"] * rate
    elif rule.key == "rating":
        # Only the contract's ratings count; a `rated` event without one (or with another value) is
        # neither satisfied nor dissatisfied. One rating per case (一事一评): its first, in the month it
        # was given; a later one of the same case (a second push, a rating sent again), in that month
        # or after, is not counted either way.
        mine_all = [r for r in facts.ratings if mine(r)]
        valid = [r for r in mine_all if r.rating in RATINGS]
        first: dict[str, RatingFact] = {}
        for r in valid:
            if not r.rated_before:
                first.setdefault(r.case_id or f"event:{r.event_id}", r)
        ratings = list(first.values())
        satisfied = sum(1 for r in ratings if r.rating in SATISFIED)
        inputs = {"satisfied": satisfied, "ratings": len(ratings), "not_counted": len(mine_all) - len(valid),
                  "repeated": len(valid) - len(ratings)}
        rate = _rate(satisfied, len(ratings))
        no_data = rate is None
        value = p["factor"] if no_data else p["factor"] * rate
    elif rule.key == "data_exchange":
        self_built = [d for d in sorted(subject.departments) if catalog.departments[d].self_built]
        deadline = push_deadline(facts.month, rulebook.push_day, tz)
        pushes = [f for f in facts.pushes if f.department in self_built]
        entered = [f for f in facts.entered if f.department in self_built and f.first_recorded_at <= deadline]
        letters = [f for f in facts.letters if f.department in self_built]
        # "By the 5th" ends at 24:00 of the 5th, which is on time, as in the backfill rule and the
        # contract's deadlines (a deadline "ends at 24:00"): late is after it.
        # A self-built department that pushed nothing of the month by then did not push in time
        # (未及时推送): silence must not score better than a late push.
        past_due = facts.as_of is not None and facts.as_of > deadline
        # Its data entered into the online system by then instead (填报: online or at a window) is not
        # silence: "未及时推送、填报或导入" (before, such a department lost 5 as 未推送: found by a black-box
        # test). An entry registered long after its event is the backfill rule's (操作规范), not docked here.
        silent = [d for d in self_built if not any(f.department == d for f in (*pushes, *entered, *letters))]
        not_pushed = silent if past_due else []
        # A push refused whole is still a push, and a late one is late (未及时推送) as well as not
        # to the standard (不符合规范): two deductions, as a late push of valid data has the first.
        late_letters = [f for f in letters if f.pushed_at is not None and f.pushed_at > deadline]
        late = any(f.last_recorded_at > deadline for f in pushes) or bool(late_letters) or bool(not_pushed)
        inputs = {"self_built": bool(self_built), "import_events": sum(f.events for f in pushes),
                  "entered_events": sum(f.events for f in entered),
                  "last_push": max((f.last_recorded_at for f in pushes), default=None),
                  "push_deadline": deadline, "late": late, "dead_letters": len(letters),
                  "dead_letters_late": len(late_letters), "not_pushed": not_pushed}
        if inputs["last_push"] is not None:
            inputs["last_push"] = inputs["last_push"].astimezone(tz)
        value = p["base"] - (p["late"] if late else 0) - (p["nonstandard"] if letters else 0)
        if not self_built:
            value, note = rule.points, "不适用（非自建系统部门）"
        elif not_pushed:
            note = f"截至 {as_day_ends(deadline.astimezone(tz), '%Y-%m-%d')} 未推送当月数据：{'、'.join(not_pushed)}"
        elif not pushes and not letters and not entered:
            no_data, note = True, "" if facts.as_of is None else "推送期限未到，暂无推送数据"
    elif rule.key == "other":
        deducted = sum((c.points for c in supplied.complaints), Fraction(0))
        inputs = {"deducted": float(deducted), "complaints": [{"points": float(c.points), "reason": c.reason}
                                                              for c in supplied.complaints]}
        value = p["base"] - deducted
    else:  # pragma: no cover - the rulebook refuses other keys
        raise ScoringError(f"unknown part {rule.key!r}")
    if no_data and not note:
        note = "无数据"
    return PartScore(rule.key, rule.title, float(rule.points), float(_round(_clamp(value, rule.points))),
                     inputs, rule.formula, no_data, note)


def as_day_ends(moment: datetime, day: str, exact: bool = True) -> str:
    """A local moment as a person reads a deadline: local midnight as 24:00 of the day before (a
    push at 2026-06-06 00:00 is on time for "by the 5th", and reads 06-05 24:00, not 06-06);
    other moments as their day, with the time when `exact`."""
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return f"{moment - timedelta(days=1):{day}} 24:00"
    return f"{moment:{day} %H:%M}" if exact else f"{moment:{day}}"


def basis(part: PartScore) -> str:
    """A part's inputs in a few words, for the table: what a person checks the points against."""
    i = part.inputs
    if part.key == "coverage":
        return part.note or f"{i['online']}/({i['in_scope']}−{i['vertical']})"
    if part.key == "publication":
        return f"缺项 {i['missing']}（{i['items']} 项）"
    if part.key == "operation":
        return (f"{i['items_with_cases']}/({i['static_items']}−{i['suspended_items']})"
                + (f" m={i['spot_checks']}" if i["spot_checks"] else ""))
    if part.key == "maintenance":
        return f"p={i['unapplied_changes']}"
    if part.key == "conformity":
        return f"告警 {i['cases_with_alerts']}/{i['cases']}"
    if part.key == "supervision":
        return f"完成 {i['tickets_done']}/{i['tickets']}"
    if part.key == "rating":
        uncounted = f" 未计 {i['not_counted']}" if i.get("not_counted") else ""  # events without a known rating
        repeated = f" 重复评议 {i['repeated']}" if i.get("repeated") else ""  # a case's later ratings (一事一评)
        return f"满意 {i['satisfied']}/{i['ratings']}{uncounted}{repeated}"
    if part.key == "data_exchange":
        if not i["self_built"]:
            return "不适用"
        words = [f"推送 {i['import_events']}"]
        if i.get("entered_events"):
            words.append(f"填报 {i['entered_events']}")
        if i["last_push"] is not None:
            # Late said of the last push only when it was: a late refused push is said under 不规范 (before,
            # "末次 12-03（逾期）" of a push on time read as a contradiction: found by a black-box test).
            words.append(f"末次 {as_day_ends(i['last_push'], '%m-%d', exact=False)}"
                         + ("（逾期）" if i["last_push"] > i["push_deadline"] else ""))
        if i.get("not_pushed"):
            words.append(f"未推送 {'、'.join(i['not_pushed'])}（逾期）")
        if i["dead_letters"]:
            late = f"（逾期推送 {i['dead_letters_late']}）" if i.get("dead_letters_late") else ""
            words.append(f"不规范 {i['dead_letters']}{late}")
        return " ".join(words)
    if part.key == "other":
        return f"扣 {number_text(Fraction(str(i['deducted'])))}" if i["deducted"] else "—"
    return ""
