"""The ClickHouse client: embedded chdb (the default) or a server URL.

One chdb data directory can be open in only one process at a time, so the
embedded store is opened by the process that runs the pipeline (`replay`,
`demo`, `import`) or, afterwards, by `alerts export`. A fleet of workers needs
a ClickHouse server (``SUNLIGHT_CLICKHOUSE=http://user:pass@host:8123/db``).

Opening the embedded store takes a lock on the data directory (an advisory
``flock`` on ``clickhouse/sunlight.lock``, released by the system when the
process ends, however it ends). A second process is refused with `StoreInUse`,
which says which process holds the directory and how to use another one, instead
of chdb's own ``Error initializing EmbeddedServer``.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors: in its user part, and in a
    `password=` parameter (clickhouse-connect reads one there too; found by review). One that is no
    http(s) URL (no scheme: `user:password@host:8123`), or cannot be read as one (an unclosed [IPv6]
    address, a port that is no number), loses its user part whole (up to its last `@`): those kept
    the password before (found by review)."""
    return re.sub(r"(?i)(password=)[^&#]*", r"\1***", _user_part_hidden(url))


def _user_part_hidden(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() in ("http", "https") and "@" not in parts.path:
            if parts.password is None:
                return url
            netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url


class StoreError(RuntimeError):
    """The store cannot be reached; the message never holds the password."""


class StoreInUse(StoreError):
    """Another process has the embedded store's data directory open."""


def scrub(text: str, server_url: str) -> str:
    """`text` without the URL's password (in case a library quotes the URL it was given)."""
    password = urlsplit(server_url).password
    return text.replace(password, "***") if password else text


def server_interface(server_url: str) -> str:
    """`http` or `https`, as the URL's scheme says. clickhouse-connect reads the host, port and
    credentials of a DSN but not its scheme: https:// on a port other than 443 or 8443 went as
    plain HTTP, the password with it, and a URL without a scheme reached localhost (found by a
    black-box test). Anything but http:// or https:// with a host is refused."""
    try:
        parts = urlsplit(server_url)
        parts.port  # a port that is no number, or out of range
    except ValueError:  # an unclosed [IPv6] address, say (a traceback before: found by review)
        parts = None
    scheme = parts.scheme.lower() if parts is not None else ""
    if parts is None or scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"SUNLIGHT_CLICKHOUSE must be an http:// or https:// URL with a host, such as "
                         f"https://user:password@clickhouse.example:8443/default (got {redact(server_url)!r})")
    return scheme


def _unreachable(said: str) -> str:
    """Why a server could not be reached, as the driver's error says it in its depths (a refused
    connection, a name not resolved), else the error itself, cut to 300 characters."""
    for pattern in (r"\[Errno -?\d+\] [^'\")]+", r"Failed to resolve '[^']+'", r"timed out",
                    r"Code: \d+\.[^\n]{0,200}"):
        found = re.search(pattern, said)
        if found:
            return found.group(0).strip()
    return said[:300]


def connect(server_url: str | None, data_dir: Path, shared_broker: bool = False):
    """A clickhouse-connect client: the server at `server_url`, or chdb in `data_dir`.
    `shared_broker`: the process is a worker on a Kafka cluster others may consume too (only what
    a refusal advises depends on it)."""
    if server_url:
        interface = server_interface(server_url)
        # The drivers' own warnings of the first try said the same as the error below, in three
        # long lines (found by a black-box test): quiet while connecting, and the cause said short.
        quieted = [logging.getLogger(name) for name in ("urllib3.connectionpool", "clickhouse_connect")]
        levels = [logger.level for logger in quieted]
        for logger in quieted:
            logger.setLevel(logging.ERROR)
        try:
            return clickhouse_connect.get_client(dsn=server_url, interface=interface)
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {redact(server_url)}: "
                             f"{_unreachable(scrub(str(exc), server_url))}") from None
        finally:
            for logger, level in zip(quieted, levels):
                logger.setLevel(level)
    path = Path(data_dir).resolve() / "clickhouse"
    path.mkdir(parents=True, exist_ok=True)
    _lock(path, shared_broker)
    try:
        return EmbeddedStore(clickhouse_connect.get_client(dsn=f"chdb://{path}"), path)
    except Exception:
        _unlock(path)
        raise


class EmbeddedStore:
    """A chdb client that holds its data directory's lock until it is closed."""

    def __init__(self, client, path: Path):
        self._client = client
        self._path: Path | None = path

    def close(self) -> None:
        try:
            self._client.close()
        finally:
            if self._path is not None:
                _unlock(self._path)
                self._path = None

    def __getattr__(self, name):
        return getattr(self._client, name)


# Locks this process holds: directory -> [file descriptor, clients open on it]. Several
# clients of one process may share a directory (chdb runs one server per process).
_held: dict[Path, list[int]] = {}


def _lock(path: Path, shared_broker: bool = False) -> None:
    entry = _held.get(path)
    if entry is not None:
        entry[1] += 1
        return
    fd = os.open(path / "sunlight.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip().partition("\n")[0] or "another process"
        os.close(fd)
        pid, command = _holder(holder)
        who = f"process {pid} ({command})" if pid else holder
        data_dir = path.parent
        if shared_broker:
            # Another directory would split the store: each worker of the group would write the
            # cases it holds into its own, and a case that moves between them would be in both.
            raise StoreInUse(f"the data directory {data_dir} is in use by {who}. One embedded store serves one "
                             f"process: workers that share a Kafka cluster (SUNLIGHT_KAFKA) in one consumer group "
                             f"must share one store, a ClickHouse server (SUNLIGHT_CLICKHOUSE); do not give them "
                             f"data directories of their own (see docs/deploy.md)") from None
        if command.split()[1:2] in (["serve"], ["worker"]):
            # It runs until stopped, and a command acting on this store's data cannot use another
            # directory (found by a black-box test: `notices resend` beside `serve` was told to).
            raise StoreInUse(f"the data directory {data_dir} is in use by {who}, which runs until it is "
                             f"stopped. One directory can be open in one process at a time: stop it, run this "
                             f"command, then start it again; or run the long-lived processes on a ClickHouse "
                             f"server (SUNLIGHT_CLICKHOUSE) and a Kafka cluster (SUNLIGHT_KAFKA), beside which "
                             f"commands run at any time (docs/deploy.md)") from None
        raise StoreInUse(f"the data directory {data_dir} is in use by {who}. One directory can be open in one "
                         f"process at a time: wait for that process to finish or stop it, or use another "
                         f"directory, e.g. SUNLIGHT_DATA_DIR={data_dir}-2 (a ClickHouse server, "
                         f"SUNLIGHT_CLICKHOUSE, serves many processes at once)") from None
    left = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
    if left[1:2] == [RUNNING]:
        # The last holder never let go (it was killed, or its machine stopped; a clean end empties
        # the file): said once, by whichever process opens the store next (a worker killed with
        # kill -9 and started again said nothing of it: found by a black-box test).
        log.warning("the last process to open the store in %s (%s) did not stop cleanly (killed, or its machine "
                    "stopped). If it ran the pipeline (worker, serve, replay, import, demo, or a ticket or notice "
                    "command on the embedded defaults), what it had taken and not yet written is not in the "
                    "store: workers on a Kafka cluster (SUNLIGHT_KAFKA) read it again from their last committed "
                    "offsets; on an embedded broker (the default) the events that broker held are lost: send "
                    "them again, or run the command again (docs/faults.md)", path.parent, _process_named(left[0]))
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {' '.join(['sunlight', *sys.argv[1:]])}\n{RUNNING}\n".encode(), 0)
    _held[path] = [fd, 1]


# The lock file's second line while its holder runs: emptied when it ends cleanly (closes the
# store, or exits normally), left when it is killed.
RUNNING = "running"


def _holder(line: str) -> tuple[str, str]:
    """The process id and command a lock file's first line names (`1234 sunlight worker ...`); no id
    when the line is not of that form."""
    pid, _, command = line.partition(" ")
    return (pid, command) if pid.isdigit() else ("", line)


def _process_named(line: str) -> str:
    pid, command = _holder(line)
    return f"process {pid}: {command}" if pid else line


def _release_all(holder: int) -> None:
    """At a normal exit, the lock files of stores left open are emptied: the process ended cleanly
    (the holder's exit, not a forked child's)."""
    if os.getpid() != holder:
        return
    for fd, _ in list(_held.values()):
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass


atexit.register(_release_all, os.getpid())  # (a forked child inherits it, with this process's pid)


def _unlock(path: Path) -> None:
    entry = _held.get(path)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        os.ftruncate(entry[0], 0)  # a clean end (`RUNNING`)
        fcntl.flock(entry[0], fcntl.LOCK_UN)
        os.close(entry[0])
        del _held[path]
