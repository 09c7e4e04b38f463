"""The replay's sending process (`streams.replay_feed`), where it needs no broker."""

from __future__ import annotations

import pytest

from streams import replay_feed


def test_a_sending_process_whose_parent_is_gone_leaves_quietly(monkeypatch, capsys):
    """Found by a test: a replay whose own broker died exits at once; its sending process, failing
    next, told a parent that was gone and printed BrokenPipeError's traceback on the shared stderr."""
    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    def exit_now(status):
        raise SystemExit(status)

    monkeypatch.setattr(replay_feed.sys, "stdout", Gone())
    monkeypatch.setattr(replay_feed.os, "_exit", exit_now)
    with pytest.raises(SystemExit) as left:
        replay_feed._say("failed KafkaConnectionError: the broker is gone")
    assert left.value.code == 1
    assert capsys.readouterr().err == ""
