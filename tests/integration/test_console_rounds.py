"""The console's pages of a ticket opened again: the rounds kept apart (a store of its own: chdb
serves one data directory per process, so not beside test_console_security's)."""

from __future__ import annotations

import asyncio

from sinks.clickhouse import connect
from streams.catalog_source import load_judge
from streams.console.app import Backend, create_app
from streams.console.links import Links
from tests.integration.conftest import pipeline_settings
from tests.integration.test_console_security import EXAMPLE, KEY, Client, in_a_week, path_of
from tests.integration.test_scoring_rounds import reopened_ticket, store_tickets


def test_a_reply_page_shows_this_round_and_keeps_the_earlier_ones_apart(tmp_path):
    """Found by a black-box test: a ticket closed and opened again showed the department every
    round's history unmarked (an escalation to the discipline-inspection office of a round it was
    never told of among it), and the system's own steps by "sunlight"."""
    versions, current = reopened_ticket("C-R", "320200-XK-SCJG-0001", "SCJG")
    client = connect(None, tmp_path / "data")
    try:
        store_tickets(client, versions)
        judge = load_judge(EXAMPLE, None)
        settings = pipeline_settings(tmp_path / "data", secret_key=KEY, public_url="https://console.city.example",
                                     users_file=tmp_path / "users.json")
        app = create_app(settings, Backend(client, lambda: judge, lambda messages: asyncio.sleep(0), wait_seconds=0.2))
        links = Links("https://console.city.example", KEY)
        page = Client(app).get(path_of(links.make(current.ticket_id, "SCJG", in_a_week(), current.version)))
    finally:
        client.close()
    assert page.status == 200, page.text
    this_round, _, earlier = page.text.partition("<details data-earlier-rounds>")
    assert "本轮为第 2 轮督办" in this_round and "人工督办" in this_round
    assert "升级至纪检监察机构" not in this_round and "督办办结" not in this_round
    assert "此前各轮督办记录" in earlier and "升级至纪检监察机构" in earlier and "督办办结" in earlier
    assert "电子监察系统 · 升级至部门负责人" in earlier and " · sunlight · " not in page.text
