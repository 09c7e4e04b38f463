"""The ClickHouse client: embedded chdb (the default) or a server URL.

One chdb data directory can be open in only one process at a time, so the
embedded store is opened by the process that runs the pipeline (`replay`,
`demo`, `import`) or, afterwards, by `alerts export`. A fleet of workers needs
a ClickHouse server (``SUNLIGHT_CLICKHOUSE=http://user:pass@host:8123/db``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class StoreError(RuntimeError):
    """The store cannot be reached; the message never holds the password."""


def scrub(text: str, server_url: str) -> str:
    """`text` without the URL's password (in case a library quotes the URL it was given)."""
    password = urlsplit(server_url).password
    return text.replace(password, "***") if password else text


def connect(server_url: str | None, data_dir: Path):
    """A clickhouse-connect client: the server at `server_url`, or chdb in `data_dir`."""
    if server_url:
        try:
            return clickhouse_connect.get_client(dsn=server_url)
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {redact(server_url)}: "
                             f"{scrub(str(exc), server_url)}") from None
    path = Path(data_dir).resolve() / "clickhouse"
    path.mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=f"chdb://{path}")
