"""Loading the catalog and calendar overrides from files, and reloading them while running."""

from __future__ import annotations

import functools
import hashlib
import logging
from importlib.resources import files
from pathlib import Path

import yaml

from alerts.calendar import WorkCalendar, load_overrides, missing_year_text, parse_office_hours
from alerts.catalog import CatalogError, load_catalog, unknown_keys
from alerts.config import RuleConfig
from alerts.evaluate import Judge, judging_basis
from alerts.notices import NoticeText
from alerts.scoring import Rulebook, ScoringError, load_rulebook
from alerts.tickets import TicketPolicy, policy_from_config
from sinks.notify import load_templates
from streams import metrics

log = logging.getLogger(__name__)


def _missing_year(year: int) -> None:
    log.warning("%s", missing_year_text(year, "the calendar override file (SUNLIGHT_CALENDAR_OVERRIDES)"))
    metrics.CALENDAR_MISSING_YEARS.inc()


def file_bytes(path: Path, what: str, error: type[Exception] = CatalogError) -> bytes:
    """A file's bytes; a path that is missing, a directory or unreadable is `error`, in one line."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{what} {path}: {exc.strerror or exc}") from None


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping: by default the last one
    wins without a word (a department's complaints, a rule's limit or an item's days written
    twice, the first silently lost). Keys merged in (`<<: *anchor`) may be overridden, as YAML
    means them to be."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base loader says so
                    break
                if first is not key_node:
                    raise _DuplicateKey(f"{key!r} is written twice in one mapping (lines {first.start_mark.line + 1} "
                                        f"and {key_node.start_mark.line + 1})")
        return super().construct_mapping(node, deep=deep)


def yaml_of(text: bytes, path: Path | str, what: str, error: type[Exception] = CatalogError):
    """A YAML document from a file's bytes (UTF-8, a BOM ignored); text in another encoding (GBK,
    from many Chinese systems), invalid YAML or a key written twice in one mapping is `error`, in
    one line."""
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = text.count(b"\n", 0, exc.start) + 1
        raise error(f"{what} {path} is not UTF-8 text (line {line}: byte 0x{text[exc.start]:02x}); save it as "
                    f"UTF-8 (a file from a Chinese system is often GBK: iconv -f GBK -t UTF-8)") from None
    try:
        return yaml.load(decoded, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None


def read_yaml(path: Path, what: str):
    return yaml_of(file_bytes(path, what), path, what)


def rulebook_file(path: Path | None) -> tuple[bytes, Rulebook]:
    """A city's scoring rulebook (`path`), or the default one shipped with the domain (the Wuxi
    rules, alerts/rulebooks/wuxi.yaml): its bytes (whose digest a score keeps) and the rulebook."""
    if path is None:
        text = files("alerts").joinpath("rulebooks/wuxi.yaml").read_bytes()
    else:
        text = file_bytes(path, "rulebook", ScoringError)
    return text, load_rulebook(yaml_of(text, path or "alerts/rulebooks/wuxi.yaml", "rulebook", ScoringError))


@functools.cache
def city_rulebook(path: Path | None = None) -> Rulebook:
    """The city's rulebook (`Settings.rulebook`, SUNLIGHT_RULEBOOK), else the default one, read once
    per process: the region names of the dashboards' 区域 and of the console (before, always the
    default's, so another city's regions showed as codes, or as Wuxi's names)."""
    return rulebook_file(path)[1]


def default_rulebook() -> Rulebook:
    """The default rulebook (the pictures' region names, of the demo city)."""
    return city_rulebook(None)


def load_judge(catalog_path: Path, overrides_path: Path | None = None,
               config: RuleConfig = RuleConfig(), raw=None) -> Judge:
    """The judge of a catalog file (or of `raw`, that file already read)."""
    catalog = load_catalog(raw if raw is not None else read_yaml(catalog_path, "catalog"))
    overrides = {}
    if overrides_path:
        days = read_yaml(overrides_path, "calendar overrides (SUNLIGHT_CALENDAR_OVERRIDES)")
        try:
            overrides = load_overrides(days)
        except ValueError as exc:  # one line naming the file and the setting, not a traceback
            raise CatalogError(f"{overrides_path} (SUNLIGHT_CALENDAR_OVERRIDES): {exc}") from None
    return Judge(catalog, WorkCalendar(overrides, catalog.timezone, on_missing_year=_missing_year), config)


def rules_digest() -> str:
    """What stands for the rules themselves in the judging basis (`alerts.evaluate.judging_basis`):
    the domain package's files (`alerts/`: the detectors and everything they read) and the version
    of the installed holiday tables (`chinese_calendar`). A release that changes either may judge
    a case otherwise, so the cases settled before it are judged again by the next process on a
    store (`sinks.queries.settled_cases`)."""
    import alerts
    import chinese_calendar

    root = Path(alerts.__file__).parent
    digest = hashlib.sha256(str(getattr(chinese_calendar, "__version__", "")).encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def in_force(basis: str, judge: Judge) -> None:
    """`sunlight_catalog_in_force` names this basis alone: workers whose series differ judge the same
    cases under different catalogs (the SunlightCatalogsDiffer rule), which nothing showed before.
    `sunlight_calendar_missing_years` counts the years the calendar in force lacks, so far (a
    calendar override file that brings them sets it back to 0: the SunlightCalendarYearMissing rule
    resolves)."""
    metrics.CATALOG_IN_FORCE.clear()
    metrics.CATALOG_IN_FORCE.labels(basis).set(1)
    metrics.CALENDAR_MISSING_YEARS.set(len(judge.calendar.missing_years))


class CatalogSource:
    """Holds the current Judge and reloads it when the catalog file changes.

    A catalog that fails to load is reported and the previous one stays in force.
    """

    def __init__(self, catalog_path: Path, overrides_path: Path | None = None, tickets_path: Path | None = None,
                 templates_dir: Path | None = None, rulebook_path: Path | None = None):
        self.catalog_path = Path(catalog_path)
        self.overrides_path = overrides_path
        self.tickets_path = tickets_path
        self.templates_dir = templates_dir
        # The city's region names (滨湖区 ...), from its rulebook: read at start, so that a rulebook
        # that cannot be read stops the start with its error, as a catalog does.
        self.region_names = city_rulebook(rulebook_path).region_names
        self.judge, self.policy, self.office_hours = self._load()
        self.rules = rules_digest()
        # What each case row records it was judged under (`cases.judged_under`).
        self.basis = judging_basis(self.judge, self.rules)
        in_force(self.basis, self.judge)
        self.texts = load_templates(templates_dir)
        self._stamp = self._mtime()
        self.refused = False  # the files on disk were refused at the last reload

    def _load(self) -> tuple[Judge, TicketPolicy, tuple]:
        """The judge, the ticket policy and the office hours, from one reading of the catalog file.

        The ticket policy is a file of its own (SUNLIGHT_TICKETS), else the catalog's `tickets`;
        the office hours (when the worker expects events, for its health alerts) the catalog's
        `office_hours`, else 9:00-17:00 on working days."""
        raw = read_yaml(self.catalog_path, "catalog")
        judge = load_judge(self.catalog_path, self.overrides_path, raw=raw)
        unread = unknown_keys(raw)
        if unread:  # a misspelt key takes away what it meant (a benchmark, a time limit) without a word
            log.warning("catalog %s has keys the catalog format does not, which are not read (misspelt?): %s",
                        self.catalog_path, "; ".join(unread[:20]) + ("; ..." if len(unread) > 20 else ""))
        fields = raw if isinstance(raw, dict) else {}
        try:
            if self.tickets_path is not None:
                policy = policy_from_config(read_yaml(self.tickets_path, "ticket policy (SUNLIGHT_TICKETS)"))
            else:
                policy = policy_from_config(fields.get("tickets"))
            office_hours = parse_office_hours(fields.get("office_hours"))
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        return judge, policy, office_hours

    def ticket_policy(self) -> TicketPolicy:
        return self.policy

    def notice_text(self) -> NoticeText:
        return self.texts

    def _mtime(self) -> tuple[float, ...]:
        stamps = [self.catalog_path.stat().st_mtime_ns if self.catalog_path.exists() else 0]
        for path in (self.overrides_path, self.tickets_path):
            stamps.append(Path(path).stat().st_mtime_ns if path and Path(path).exists() else 0)
        return tuple(stamps)

    def maybe_reload(self) -> bool:
        stamp = self._mtime()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        before = self.judge.calendar
        try:
            self.judge, self.policy, self.office_hours = self._load()
            basis = judging_basis(self.judge, self.rules)
        except Exception as exc:  # whatever is wrong with the new file, the running catalog stays
            metrics.CATALOG_RELOADS.labels("rejected").inc()
            metrics.CATALOG_REFUSED.set(1)  # until the files are mended: an edit that never took effect
            self.refused = True
            log.error("catalog reload refused, keeping the previous catalog: %s", exc)
            return False
        self.basis = basis
        # The years the calendar before found missing stay missing unless this one has them (before,
        # any reload set sunlight_calendar_missing_years to 0 until a deadline ran into them again:
        # found by review). Said once: the new calendar does not say them again.
        self.judge.calendar.missing_years |= {year for year in before.missing_years
                                              if not self.judge.calendar.has_holiday_data(year)}
        in_force(basis, self.judge)
        metrics.CATALOG_RELOADS.labels("loaded").inc()
        metrics.CATALOG_REFUSED.set(0)
        # After a refusal, said as loudly as the refusal was (an operator who mended the file reads
        # the same log level).
        # A warning, as the refusal is: the log at its default level is where an operator who edited
        # the ConfigMap looks for the edit taking effect (at INFO it said nothing).
        log.warning("catalog reloaded from %s: %d items%s",
                self.catalog_path, len(self.judge.catalog.items),
                " (the refused edit is mended: this catalog is in force)" if self.refused else "")
        self.refused = False
        return True
