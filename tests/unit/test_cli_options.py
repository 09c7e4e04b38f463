"""Options every command reads the same way, refused with the same one-line form as the rest."""

import pytest

from streams import cli


@pytest.mark.parametrize("text, words", [
    ("yesterday", "sunlight: --now must be an RFC 3339 time"),
    ("2026-03-02T09:15:00", "sunlight: --now needs a UTC offset"),
])
def test_a_bad_now_is_refused_in_the_cli_s_own_words(text, words):
    """A bad --now was the one refusal without the `sunlight:` prefix (a black-box test found it)."""
    with pytest.raises(SystemExit) as refused:
        cli._parse_now(text)
    assert str(refused.value).startswith(words)


def test_a_good_now_keeps_its_offset():
    assert cli._parse_now("2026-03-02T09:15:00+08:00").isoformat() == "2026-03-02T09:15:00+08:00"
    assert cli._parse_now(None) is None


@pytest.mark.parametrize("value", ["70000", "-1", "80.5", "inf", "nan"])
def test_a_port_out_of_range_is_said_not_a_traceback(value):
    """SUNLIGHT_METRICS_PORT=70000 stopped `sunlight worker` with an OverflowError from bind()
    (found by a black-box test); the same for the console's port."""
    from streams.settings import Settings

    for name in ("SUNLIGHT_METRICS_PORT", "SUNLIGHT_HTTP_PORT"):
        with pytest.raises(SystemExit, match=f"{name} must be a port number from 0 to 65535"):
            Settings.from_env({name: value})
    assert Settings.from_env({"SUNLIGHT_METRICS_PORT": "0"}).metrics_port == 0
