"""The console's 被拒收事件 page (/letters) lists the refused events that hold their case back until
corrected, as the case pages and the dashboards' 暂缓评判的办件 read them: not one corrected since
(pushed again under its id through the feed), nor a refusal that holds no case (a conflicting
copy). Found by review: the page told a department to correct what it had corrected."""
from __future__ import annotations

import asyncio
import copy
import re

import orjson
import pytest
import yaml

from sinks.clickhouse import connect
from streams.catalog_source import load_judge
from streams.console.app import Backend, create_app
from streams.console.auth import add_user
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed
from tests.integration.conftest import pipeline_settings
from tests.integration.test_console_security import EXAMPLE, KEY, NOW, Client, _event

ZJJ_ITEM = "320200-XK-ZJJ-0001"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    directory = tmp_path_factory.mktemp("letters")
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    item = copy.deepcopy(raw["items"][0])
    item.update(code=ZJJ_ITEM, name="建筑工程施工许可", department="ZJJ")
    raw["items"].append(item)
    catalog = directory / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    corrected = _event("C-Y", ZJJ_ITEM, "ZJJ")
    refused = {**corrected, "occurred_at": "昨天上午"}
    kept = _event("C-Z", ZJJ_ITEM, "ZJJ")
    conflicting = {**kept, "officer_id": "P99"}  # the same event_id, another content
    waiting = {**_event("C-W", ZJJ_ITEM, "ZJJ"), "occurred_at": "上周"}  # never corrected
    settings = pipeline_settings(directory / "data")

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            for batch in ([refused, kept, waiting], [corrected, conflicting]):
                await produce(running.bootstrap, settings.case_events_topic,
                              [(e["case_id"].encode(), orjson.dumps(e)) for e in batch])
                await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)

    asyncio.run(run())
    users = directory / "users.json"
    add_user(users, "住建局长", "head", "ZJJ", "head-password-1")
    client = connect(None, settings.data_dir)
    judge = load_judge(catalog, None)

    async def publish(messages):
        raise AssertionError("nothing is published here")

    settings = pipeline_settings(settings.data_dir, secret_key=KEY, public_url="https://console.city.example",
                                 users_file=users)
    yield create_app(settings, Backend(client, lambda: judge, publish, wait_seconds=0.2))
    client.close()


def test_only_refused_events_that_still_hold_their_case_are_listed(app):
    head = Client(app)
    head.sign_in("住建局长", "head-password-1")
    page = head.get("/letters").text
    rows = re.findall(r"<tr data-letter=.*?</tr>", page, flags=re.S)
    listed = [re.search(r'data-label="办件">(?:<a [^>]*>)?([^<]*)<', row).group(1) for row in rows]
    assert listed == ["C-W"] and "共 1 条" in page
    assert "暂缓评判" in head.get("/cases/C-W").text  # as its page says
    for case in ("C-Y", "C-Z"):  # corrected; a conflicting copy, which holds nothing back
        assert "暂缓评判" not in head.get(f"/cases/{case}").text


def test_a_case_page_says_a_version_of_one_of_its_events_was_refused_as_conflicting(app):
    # Found by a black-box test: a case judged on the first of two versions of one event (the
    # other, which could change its cards, refused as a conflicting duplicate) gave no sign of it.
    head = Client(app)
    head.sign_in("住建局长", "head-password-1")
    page = head.get("/cases/C-Z").text
    card = re.search(r"<div class=\"card waiting\" data-conflicting>.*?</div>", page, flags=re.S)
    assert card and "内容冲突" in card.group(0) and "本办件按先入库的版本评判" in card.group(0)
    kept = _event("C-Z", ZJJ_ITEM, "ZJJ")["event_id"]
    assert f"（{kept}）" in card.group(0)
    assert "data-conflicting" not in head.get("/cases/C-Y").text  # corrected, not conflicting
