"""A city's own rulebook (SUNLIGHT_RULEBOOK) names its regions wherever Sunlight shows them, and is
`sunlight score`'s default. Before, the workers and the console always took the default (Wuxi)
rulebook's names, so another city's regions showed as their codes."""

from __future__ import annotations

from importlib.resources import files

import pytest

from alerts.scoring import ScoringError
from streams.catalog_source import CatalogSource
from streams.console.app import region_names
from streams.settings import Settings
from tests.unit.helpers import CONTRACT


def city_rulebook(tmp_path):
    text = files("alerts").joinpath("rulebooks/wuxi.yaml").read_text(encoding="utf-8")
    path = tmp_path / "our-city.yaml"
    path.write_text(text.replace("无锡市", "示例市").replace("滨湖区", "示例一区"), encoding="utf-8")
    return path


def test_the_city_s_rulebook_names_its_regions_for_the_workers_and_the_console(tmp_path):
    path = city_rulebook(tmp_path)
    settings = Settings.from_env({"SUNLIGHT_RULEBOOK": str(path)})
    assert settings.rulebook == path
    source = CatalogSource(CONTRACT / "catalog.example.yaml", rulebook_path=settings.rulebook)
    assert (source.region_names["320200"], source.region_names["320211"]) == ("示例市", "示例一区")
    assert region_names(settings)["320211"] == "示例一区"
    # Unset: the default's, as before.
    assert CatalogSource(CONTRACT / "catalog.example.yaml").region_names["320211"] == "滨湖区"
    assert region_names(Settings.from_env({}))["320211"] == "滨湖区"


def test_a_rulebook_that_cannot_be_read_stops_the_start_with_its_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("region_names: [not, a, map]\n", encoding="utf-8")
    with pytest.raises(ScoringError):
        CatalogSource(CONTRACT / "catalog.example.yaml", rulebook_path=bad)
