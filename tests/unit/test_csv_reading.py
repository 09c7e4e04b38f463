"""The CSV reader of `sunlight import` (streams.importers.read_csv): what it cannot read for sure
is refused in one line, never read otherwise without a word (found by a black-box test)."""

from __future__ import annotations

import pytest

from streams.importers import LogFormatError, read_csv


def test_a_stray_quote_is_refused_not_the_rest_of_the_file_read_as_one_field(tmp_path):
    """Before, a remark starting with a quote swallowed every row after it: "1000 rows read", exit
    0, the last 393 rows gone (a closing among them, and a false red overdue card)."""
    log = tmp_path / "log.csv"
    rows = [f"C{n},受理,2026-03-0{1 + n % 5}T10:00:00+08:00,备注" for n in range(8)]
    rows[3] = 'C3,受理,2026-03-04T10:00:00+08:00,"见附件'
    log.write_text("case,activity,time,remark\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(LogFormatError, match=r"log\.csv, line \d+: .*a quote"):
        list(read_csv(log, {"case", "activity", "time"}))


def test_a_column_the_mapping_reads_named_twice_in_the_header_is_refused(tmp_path):
    """Before, the last copy was read: 850 of 870 cards of the receipt log named the wrong officer."""
    log = tmp_path / "log.csv"
    log.write_text("case,承办人,time,承办人\nC1,张三,2026-03-02T10:00:00+08:00,\n", encoding="utf-8")
    with pytest.raises(LogFormatError, match="'承办人' more than once"):
        list(read_csv(log, {"case", "承办人", "time"}))
    # A column the mapping does not read may be there twice.
    assert [r["case"] for r in read_csv(log, {"case", "time"})] == ["C1"]
