"""Options every command reads the same way, refused with the same one-line form as the rest."""

import pytest

from streams import cli
from streams.commands import common, dlq
from streams.settings import Settings
from tests.unit.helpers import CONTRACT


@pytest.mark.parametrize("text, words", [
    ("yesterday", "sunlight: --now must be an RFC 3339 time"),
    ("2026-03-02T09:15:00", "sunlight: --now needs a UTC offset"),
])
def test_a_bad_now_is_refused_in_the_cli_s_own_words(text, words):
    """A bad --now was the one refusal without the `sunlight:` prefix (a black-box test found it)."""
    with pytest.raises(SystemExit) as refused:
        common.parse_now(text)
    assert str(refused.value).startswith(words)


def test_a_good_now_keeps_its_offset():
    assert common.parse_now("2026-03-02T09:15:00+08:00").isoformat() == "2026-03-02T09:15:00+08:00"
    assert common.parse_now(None) is None


@pytest.mark.parametrize("value", ["70000", "-1", "80.5", "inf", "nan"])
def test_a_port_out_of_range_is_said_not_a_traceback(value):
    """SUNLIGHT_METRICS_PORT=70000 stopped `sunlight worker` with an OverflowError from bind()
    (found by a black-box test); the same for the console's port."""
    from streams.settings import Settings

    for name in ("SUNLIGHT_METRICS_PORT", "SUNLIGHT_HTTP_PORT"):
        with pytest.raises(SystemExit, match=f"{name} must be a port number from 0 to 65535"):
            Settings.from_env({name: value})
    assert Settings.from_env({"SUNLIGHT_METRICS_PORT": "0"}).metrics_port == 0


@pytest.mark.parametrize("args", [["alerts", "export"], ["dlq", "list"], ["tickets", "list"],
                                  ["tickets", "show", "C1/overdue"], ["silences", "list"],
                                  ["cases", "show", "C1", "--catalog", str(CONTRACT / "catalog.example.yaml")]])
def test_a_command_that_reads_the_store_on_a_directory_without_one_says_so_and_creates_nothing(
        args, tmp_path, monkeypatch):
    """`cases show` on a mistyped SUNLIGHT_DATA_DIR created an empty store there and said the case
    was not in it (found by a black-box test)."""
    missing = tmp_path / "sunlight-dat"
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(missing))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)
    with pytest.raises(SystemExit) as refused:
        cli.main(args)
    assert str(refused.value) == (f"sunlight: no store in {missing.resolve()} (SUNLIGHT_DATA_DIR): nothing has been "
                                  f"replayed or imported there")
    assert not missing.exists()


def test_a_dead_letter_reason_that_is_none_is_refused_with_the_reasons_there_are(tmp_path, monkeypatch):
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as refused:
        cli.main(["dlq", "list", "--reason", "unknown-item"])
    assert str(refused.value).startswith("sunlight: --reason unknown-item: not a reason a letter is refused for; "
                                         "one of: ") and "unknown_item" in str(refused.value)


def test_a_command_that_reads_a_store_that_is_there_reads_it(tmp_path, monkeypatch, capsys):
    """The check above was once written under `open_store`'s decorator, which left `open_store` a bare
    generator: every command that reads through it failed with a TypeError."""
    from sinks.clickhouse import connect

    connect(None, tmp_path).close()  # a store, empty
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)
    assert cli.main(["tickets", "list", "--format", "jsonl"]) == 0
    assert cli.main(["silences", "list"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name, value", [
    ("SUNLIGHT_PARTITIONS", "0"), ("SUNLIGHT_PARTITIONS", "-1"), ("SUNLIGHT_PARTITIONS", "2.5"),
    ("SUNLIGHT_PARTITIONS", "nan"), ("SUNLIGHT_PARTITIONS", "inf"), ("SUNLIGHT_UNIT_MAX_MESSAGES", "0"),
    ("SUNLIGHT_SINK_MAX_PENDING_ROWS", "0"), ("SUNLIGHT_SINK_MAX_PENDING_ROWS", "-1"),
    ("SUNLIGHT_NOTICE_ATTEMPTS", "0"), ("SUNLIGHT_NOTICE_ATTEMPTS", "1e400"), ("SUNLIGHT_SESSION_TIMEOUT", "-1"),
    ("SUNLIGHT_FLUSH_INTERVAL", "-1"), ("SUNLIGHT_TICK_INTERVAL", "0"), ("SUNLIGHT_CASE_RETENTION_DAYS", "nan"),
    ("SUNLIGHT_CASE_RETENTION_DAYS", "inf"), ("SUNLIGHT_BROKER_FLAVOUR", "redpanda"),
    ("SUNLIGHT_CASE_RETENTION_DAYS", "forever"), ("SUNLIGHT_PUBLIC_URL", "sunlight.example.gov.cn"),
    ("SUNLIGHT_PUBLIC_URL", "https://"), ("SUNLIGHT_PUBLIC_URL", "https:///reply"),
    ("SUNLIGHT_PUBLIC_URL", "https://?x=1"), ("SUNLIGHT_PUBLIC_URL", "https://host name"),
    ("SUNLIGHT_KAFKA", "not-a-host:notaport"), ("SUNLIGHT_KAFKA", "kafka://kafka-1:9092"),
    ("SUNLIGHT_KAFKA", "kafka-1:70000"), ("SUNLIGHT_KAFKA", "kafka-1:9092,"), ("SUNLIGHT_KAFKA", ":9092"),
    ("SUNLIGHT_NOTICE_RESEND_AFTER", "1e15"), ("SUNLIGHT_NOTICE_RESEND_AFTER", "-5"),
])
def test_a_setting_out_of_range_is_a_one_line_error(name, value):
    """Found by a black-box test: these gave tracebacks, a hang that ignored SIGTERM (no room for
    rows), a silent 2 for 2.5 partitions, an idle worker burning a core (timers every 0 s), or a
    Tansu cluster read without its workarounds."""
    with pytest.raises(SystemExit) as refused:
        Settings.from_env({name: value})
    assert str(refused.value).startswith(name) and repr(value) in str(refused.value)


def test_bootstrap_servers_are_read_as_the_kafka_client_takes_them():
    from streams.settings import Settings

    for value, read in (("kafka-1:9092,kafka-2:9092", "kafka-1:9092,kafka-2:9092"), ("localhost", "localhost"),
                        (" a:1 , b:2 ", "a:1,b:2"), ("[::1]:9092", "[::1]:9092"), ("", None)):
        assert Settings.from_env({"SUNLIGHT_KAFKA": value}).kafka == read


def test_a_setting_refused_says_what_it_takes():
    """Found by a black-box test: "forever" for the retention was told only "must be a number", and
    a console address without its scheme was taken (the reply links mailed were no links at all)."""
    with pytest.raises(SystemExit, match="or 'never'"):
        Settings.from_env({"SUNLIGHT_CASE_RETENTION_DAYS": "forever"})
    with pytest.raises(SystemExit, match="starting https://"):
        Settings.from_env({"SUNLIGHT_PUBLIC_URL": "sunlight.example.gov.cn"})
    assert Settings.from_env({"SUNLIGHT_PUBLIC_URL": " https://sunlight.example.gov.cn/ "}).public_url == \
        "https://sunlight.example.gov.cn/"


def test_a_broker_flavour_is_read_whatever_its_case_and_spaces():
    assert Settings.from_env({"SUNLIGHT_BROKER_FLAVOUR": " Tansu "}).broker_flavour == "tansu"
    assert Settings.from_env({}).broker_flavour == "kafka"


def test_a_dead_letter_line_shows_its_whole_source_and_case():
    """Found by a black-box test: the source column was cut to 26 characters, so a letter of
    sunlight-ticket-ticks at offset 15 read `sunlight-ticket-ticks[3]@1`."""
    letter = {"received_at": "2026-12-04T19:31:29+08:00", "reason": "stale_version", "topic": "sunlight-ticket-ticks",
              "partition": 3, "offset": 15, "case_id": "C-2026-000000001234", "department": "JTJ", "status": "open",
              "detail": "acts on version 1, the ticket is at version 3"}
    cells = dlq.letter_cells(letter, lambda at: at[:16])
    assert "sunlight-ticket-ticks[3]@15" in cells and "C-2026-000000001234" in cells
    # Its reason and state in words (found by a black-box test: `open`, though whoever acted was told).
    assert "督办件已更新（操作过时）（stale_version）" in cells and "已告知操作人" in cells and "open" not in cells
    assert "待处理" in dlq.letter_cells({**letter, "reason": "schema"}, lambda at: at[:16])
    assert "已重投" in dlq.letter_cells({**letter, "reason": "schema", "status": "redriven"}, lambda at: at[:16])


def test_the_dead_letter_table_lines_up_whatever_chinese_its_cells_hold():
    """Found by a black-box test: padded by Python's character count, a letter whose reason is
    longer in Chinese pushed its source, case and state out of line with the heading's, and a
    department's name was cut to 8 characters."""
    from alerts.describe import display_width

    letter = {"received_at": "2026-12-04T19:31:29+08:00", "reason": "schema", "topic": "case-events", "partition": 0,
              "offset": 7, "case_id": "C-1", "department": "市市场监督管理局行政审批科", "status": "open", "detail": "x"}
    lines = dlq.letter_table([letter, {**letter, "reason": "stale_version", "topic": "sunlight-ticket-actions",
                                       "department": "JTJ", "case_id": "C-2026-000000001234"}], lambda at: at[:16])
    assert "市市场监督管理局行政审批科" in lines[1]
    for column in ("来源", "办件", "部门", "状态"):
        heading_at = display_width(lines[0][:lines[0].index(column)])
        value_starts = {display_width(line[:line.index(value)]) for line, value in
                        zip(lines[1:], {"来源": ["case-events[0]@7", "sunlight-ticket-actions[0]@7"],
                                        "办件": ["C-1 ", "C-2026-000000001234"],
                                        "部门": ["市市场监督管理局行政审批科", "JTJ"],
                                        "状态": ["待处理", "已告知操作人"]}[column])}
        assert value_starts == {heading_at}, column


def test_a_data_directory_that_is_a_file_is_said_in_one_line_naming_the_setting(tmp_path, monkeypatch, capsys):
    """Found by a black-box test: a traceback (FileExistsError)."""
    from streams import cli

    afile = tmp_path / "data"
    afile.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("SUNLIGHT_DATA_DIR", str(afile))
    monkeypatch.delenv("SUNLIGHT_CLICKHOUSE", raising=False)

    def starts(args, settings):  # as a worker or a replay starts: its data directory made first
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(cli, "cmd_export", starts)
    assert cli.main(["alerts", "export"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sunlight: {afile} (SUNLIGHT_DATA_DIR): ") and "Traceback" not in err


def test_a_migration_that_fails_says_which_and_how_it_resumes():
    """Found by a black-box test: a ClickHouse user without the right to create tables had the
    worker print a 40-line traceback."""
    from sinks.migrations import MigrationFailed, migrate

    class Denied:
        def command(self, sql):
            raise RuntimeError("Code: 497. DB::Exception: default: Not enough privileges. (ACCESS_DENIED)\nStack: ...")

    with pytest.raises(MigrationFailed, match=r"schema_migrations.*ACCESS_DENIED.*rights") as failed:
        migrate(Denied())
    assert "\n" not in str(failed.value)


def test_the_workers_help_names_the_settings_an_operator_looks_for(capsys):
    """Found by a black-box test: `sunlight worker --help` named no setting."""
    from streams import cli

    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    text = capsys.readouterr().out
    for setting in ("SUNLIGHT_KAFKA", "SUNLIGHT_CLICKHOUSE", "SUNLIGHT_DATA_DIR", "SUNLIGHT_CATALOG",
                    "SUNLIGHT_PARTITIONS", "SUNLIGHT_METRICS_PORT", "exit status"):
        assert setting in text, setting
    assert f"(default {Settings.from_env({}).partitions})" in text


def test_a_redrive_line_naming_a_letter_but_no_event_is_refused_with_what_to_write(tmp_path):
    """Found by a black-box test: {"letter_id": X} alone was sent as an event, refused, and kept as a
    new letter (schema: type None), the one it named left open."""
    from streams.commands.dlq import read_redrive

    path = tmp_path / "redrive.jsonl"
    path.write_text('{"letter_id": "L1"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as refused:
        read_redrive(path)
    assert "letter L1 names no corrected event" in str(refused.value) and '"event"' in str(refused.value)
    path.write_text('{"letter_id": "L1", "event": {"case_id": "C1"}}\n{"case_id": "C2"}\n', encoding="utf-8")
    assert read_redrive(path) == [("L1", {"case_id": "C1"}), (None, {"case_id": "C2"})]


def test_a_worker_says_at_its_start_where_its_store_health_catalog_and_partitions_are():
    """Found by a black-box test: a worker's start said only the broker's address. The store's
    password is never shown."""
    from streams.commands.pipeline import where_things_are
    from streams.settings import Settings

    said = where_things_are(Settings.from_env({"SUNLIGHT_CLICKHOUSE": "https://u:secret@ch.example:8443/sunlight",
                                               "SUNLIGHT_METRICS_PORT": "9470", "SUNLIGHT_PARTITIONS": "8",
                                               "SUNLIGHT_APP_ID": "city-a"}), "/etc/sunlight/catalog.yaml")
    assert "secret" not in said and "https://u:***@ch.example:8443/sunlight" in said
    assert "port 9470" in said and "/etc/sunlight/catalog.yaml" in said and "8 partitions" in said and "city-a" in said
    embedded = where_things_are(Settings.from_env({"SUNLIGHT_DATA_DIR": "/var/lib/sunlight", "SUNLIGHT_METRICS_PORT": "0"}),
                                "c.yaml")
    assert "embedded store in /var/lib/sunlight" in embedded and "SUNLIGHT_METRICS_PORT=0" in embedded


@pytest.mark.parametrize("name, value, words", [
    ("SUNLIGHT_PARTITIONS", "abc", "SUNLIGHT_PARTITIONS must be a number, got 'abc'"),
    ("SUNLIGHT_METRICS_PORT", "70000", "SUNLIGHT_METRICS_PORT must be a port number from 0 to 65535"),
    ("SUNLIGHT_BROKER_FLAVOUR", "redpanda", "SUNLIGHT_BROKER_FLAVOUR must be kafka or tansu"),
    # URLs that urlsplit cannot read were tracebacks (found by review)
    ("SUNLIGHT_PUBLIC_URL", "http://[::1", "SUNLIGHT_PUBLIC_URL must be the console's web address"),
    ("SUNLIGHT_PUBLIC_URL", "https://x:99999", "SUNLIGHT_PUBLIC_URL must be the console's web address"),
    # Served behind a path, its pages' links led off it (found by review).
    ("SUNLIGHT_PUBLIC_URL", "https://gov.example/sunlight", "SUNLIGHT_PUBLIC_URL must be the console's own address, "
                                                            "without a path"),
    ("SUNLIGHT_CLICKHOUSE", "http://u:secret@[::1", "SUNLIGHT_CLICKHOUSE must be an http:// or https:// URL"),
    ("SUNLIGHT_KAFKA", "[::1:9092", "SUNLIGHT_KAFKA must be the Kafka cluster's bootstrap servers"),  # accepted before
])
def test_a_setting_that_cannot_be_read_is_refused_as_other_settings_are(name, value, words, monkeypatch, capsys):
    """Found by a black-box test: a bad SUNLIGHT_ variable ended `sunlight` with status 1 and its
    bare message, where a bad catalog or channel says `sunlight: ...` with status 2."""
    monkeypatch.setenv(name, value)
    assert cli.main(["alerts", "export"]) == 2
    said = capsys.readouterr().err
    assert said.startswith(f"sunlight: {words}") and "secret" not in said, said
