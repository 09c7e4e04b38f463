"""Loading the catalog and calendar overrides from files, and reloading them while running."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from alerts.calendar import WorkCalendar, load_overrides
from alerts.catalog import CatalogError, load_catalog
from alerts.config import RuleConfig
from alerts.evaluate import Judge
from streams import metrics

log = logging.getLogger(__name__)


def _missing_year(year: int) -> None:
    log.warning("no working-day calendar for %s: counting Monday-Friday as working days; add the "
                "State Council notice for %s to the calendar override file (SUNLIGHT_CALENDAR_OVERRIDES)",
                year, year)
    metrics.CALENDAR_MISSING_YEARS.inc()


def read_yaml(path: Path, what: str):
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{what} {path} is not valid YAML: {exc}") from None


def load_judge(catalog_path: Path, overrides_path: Path | None = None,
               config: RuleConfig = RuleConfig()) -> Judge:
    catalog = load_catalog(read_yaml(catalog_path, "catalog"))
    overrides = load_overrides(read_yaml(overrides_path, "calendar overrides")) if overrides_path else {}
    return Judge(catalog, WorkCalendar(overrides, catalog.timezone, on_missing_year=_missing_year), config)


class CatalogSource:
    """Holds the current Judge and reloads it when the catalog file changes.

    A catalog that fails to load is reported and the previous one stays in force.
    """

    def __init__(self, catalog_path: Path, overrides_path: Path | None = None):
        self.catalog_path = Path(catalog_path)
        self.overrides_path = overrides_path
        self.judge = load_judge(self.catalog_path, overrides_path)
        self._stamp = self._mtime()

    def _mtime(self) -> tuple[float, float]:
        stamps = [self.catalog_path.stat().st_mtime_ns if self.catalog_path.exists() else 0]
        stamps.append(Path(self.overrides_path).stat().st_mtime_ns
                      if self.overrides_path and Path(self.overrides_path).exists() else 0)
        return tuple(stamps)  # type: ignore[return-value]

    def maybe_reload(self) -> bool:
        stamp = self._mtime()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.judge = load_judge(self.catalog_path, self.overrides_path)
        except Exception as exc:  # whatever is wrong with the new file, the running catalog stays
            metrics.CATALOG_RELOADS.labels("rejected").inc()
            log.error("catalog reload refused, keeping the previous catalog: %s", exc)
            return False
        metrics.CATALOG_RELOADS.labels("loaded").inc()
        log.info("catalog reloaded from %s: %d items", self.catalog_path, len(self.judge.catalog.items))
        return True
