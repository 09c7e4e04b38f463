"""The notifier's log of finished notices (streams/notices.py): held until the store has the row."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streams.notices import NoticeLog


def log_with_table():
    table = SimpleNamespace(data={})
    deleted = []

    def write(notice_id, stored, partition):
        table.data[notice_id] = stored

    def delete(notice_id, partition):
        table.data.pop(notice_id, None)
        deleted.append(notice_id)

    return NoticeLog(table, write, delete), table, deleted


def test_a_finished_notice_is_let_go_once_written_and_then_read_from_the_store():
    log, table, deleted = log_with_table()
    stored = log.finish("C-1/overdue/opened", "sent", 1, 0)
    assert log.status("C-1/overdue/opened", {}) == "sent"
    assert log.let_go("C-1/overdue/opened", 0, stored) and deleted == ["C-1/overdue/opened"]

    async def store(ids):
        return {i: "sent" for i in ids}

    log.load = store
    read = asyncio.run(log.read_back(["C-1/overdue/opened", "C-1/overdue/opened"]))
    assert log.status("C-1/overdue/opened", read) == "sent"


def test_a_notice_whose_row_the_store_refused_stays_in_the_table():
    """Let go, its status would be read back from a store that never got it: sent again."""
    log, table, deleted = log_with_table()
    stored = log.finish("C-1/overdue/opened", "sent", 1, 0)
    log.keep.add("C-1/overdue/opened")  # as the pipeline marks a refused notice row
    assert not log.let_go("C-1/overdue/opened", 0, stored) and deleted == []
    assert log.status("C-1/overdue/opened", {}) == "sent"
