"""Grafana provisioning: the folder 阳光监察, the ClickHouse and Prometheus datasources and the
dashboards, pushed through Grafana's HTTP API (grafana-client) or written as files for Grafana's
file provisioning (docs/grafana.md).

A push reads what Grafana has first and writes only what differs, so a second push makes GET
requests only. Grafana never shows a stored password (only that one is set), so a push cannot
compare it: the ClickHouse password is written when the datasource is created, when Grafana
has none, whenever the datasource is written anyway, or on request (`update_secrets`).

The token and the passwords are never part of a message, a log line or the output.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from dashboards.build import (CLICKHOUSE_TYPE, CLICKHOUSE_UID, FOLDER_TITLE, FOLDER_UID, PROMETHEUS_TYPE,
                              PROMETHEUS_UID)

CLICKHOUSE_NAME = "阳光监察 ClickHouse"
PROMETHEUS_NAME = "阳光监察 Prometheus"
# Where Grafana (its container) reads the exported dashboards, for the file provider.
DEFAULT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
PUSH_MESSAGE = "sunlight dashboards push"
TIMEOUT_SECONDS = 10.0

# The environment of the Grafana process that the provisioning files read (Grafana interpolates
# $NAME / ${NAME} in provisioning YAML, never in dashboard JSON).
PROVISIONING_ENV = {
    "host": "CLICKHOUSE_HOST",
    "port": "CLICKHOUSE_PORT",
    "database": "CLICKHOUSE_DATABASE",
    "user": "GRAFANA_CLICKHOUSE_USER",
    "password": "GRAFANA_CLICKHOUSE_PASSWORD",
    "prometheus": "PROMETHEUS_URL",
}

_GENERATED = ("# Written by `sunlight dashboards export` (dashboards/provision.py); do not edit by hand:\n"
              "# change the code and export again (docs/grafana.md).\n")


class ProvisionError(RuntimeError):
    """Grafana cannot be provisioned; the message names what to fix and never holds a secret."""


# ---------------------------------------------------------------------------------------------
# What Grafana should have


@dataclass(frozen=True)
class ClickHouseTarget:
    """The ClickHouse server as Grafana reaches it, and the datasource user Grafana connects as."""

    host: str
    port: int
    protocol: str = "http"  # the plugin's "http" or "native"
    secure: bool = False
    username: str = "default"
    password: str | None = field(default=None, repr=False)
    database: str = "default"
    path: str = ""  # an HTTP path prefix (a proxy), without the first slash

    @classmethod
    def from_url(cls, url: str, user: str | None = None, password: str | None = None) -> "ClickHouseTarget":
        """http(s)://USER:PASSWORD@HOST:PORT/DATABASE (the form of SUNLIGHT_CLICKHOUSE), or
        clickhouse(s)://... for the native protocol; `user` and `password` replace the URL's."""
        parts = urlsplit(url)
        schemes = {"http": ("http", False, 8123), "https": ("http", True, 8443),
                   "clickhouse": ("native", False, 9000), "tcp": ("native", False, 9000),
                   "clickhouses": ("native", True, 9440)}
        if parts.scheme not in schemes or not parts.hostname:
            raise ProvisionError(f"the ClickHouse URL for Grafana must look like http://HOST:8123/DATABASE "
                                 f"(or https://, clickhouse:// for the native protocol), got {redact_url(url)!r}")
        protocol, secure, default_port = schemes[parts.scheme]
        try:
            port = parts.port or default_port
        except ValueError:
            raise ProvisionError(f"the ClickHouse URL has an invalid port: {redact_url(url)!r}") from None
        segments = [s for s in parts.path.split("/") if s]
        database = unquote(segments[-1]) if segments else "default"
        return cls(host=parts.hostname, port=port, protocol=protocol, secure=secure,
                   username=user or (unquote(parts.username) if parts.username else "default"),
                   password=password if password is not None else (unquote(parts.password) if parts.password else None),
                   database=database, path="/".join(segments[:-1]))


def clickhouse_datasource(target: ClickHouseTarget) -> dict:
    """The ClickHouse datasource as the grafana-clickhouse-datasource plugin (v4) configures it:
    connection settings in jsonData, the password in secureJsonData."""
    json_data = {"host": target.host, "port": target.port, "protocol": target.protocol, "secure": target.secure,
                 "username": target.username, "defaultDatabase": target.database}
    if target.protocol == "http" and target.path:
        json_data["path"] = target.path
    datasource = {"uid": CLICKHOUSE_UID, "name": CLICKHOUSE_NAME, "type": CLICKHOUSE_TYPE, "access": "proxy",
                  "isDefault": False, "jsonData": json_data}
    if target.password:
        datasource["secureJsonData"] = {"password": target.password}
    return datasource


def prometheus_datasource(url: str) -> dict:
    """The Prometheus that scrapes the workers' /metrics (the pipeline-health dashboard)."""
    return {"uid": PROMETHEUS_UID, "name": PROMETHEUS_NAME, "type": PROMETHEUS_TYPE, "access": "proxy",
            "url": url, "isDefault": False, "jsonData": {"httpMethod": "POST"}}


def portable(dashboard: dict) -> dict:
    """The dashboard as it is pushed and exported: no database id, no version (Grafana assigns
    both; the uid names the dashboard)."""
    body = copy.deepcopy(dashboard)
    body["id"] = None
    body.pop("version", None)
    return body


def _comparable(dashboard: dict) -> dict:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


def built_dashboards(timezone: str = "Asia/Shanghai") -> dict[str, dict]:
    """uid -> dashboard JSON, from the dashboards as code (dashboards/build.py), in `timezone`."""
    from dashboards.build import all_dashboards

    dashboards = all_dashboards(timezone)
    for uid, dashboard in dashboards.items():
        if dashboard.get("uid") != uid:
            raise ProvisionError(f"dashboard {uid!r} carries the uid {dashboard.get('uid')!r}")
    return dashboards


# ---------------------------------------------------------------------------------------------
# Pushing


@dataclass(frozen=True)
class Change:
    kind: str  # folder | datasource | dashboard
    uid: str
    action: str  # created | updated | unchanged (with dry_run: "would be created" ...)
    why: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.uid}: {self.action}" + (f" ({self.why})" if self.why else "")


def connect(url: str | None, token: str | None, timeout: float = TIMEOUT_SECONDS):
    """A grafana-client API on `url`, authenticated with the service-account `token` (Bearer)."""
    from grafana_client import GrafanaApi

    if not url:
        raise ProvisionError("SUNLIGHT_GRAFANA_URL is not set: the Grafana to provision, e.g. http://grafana:3000")
    if not token:
        raise ProvisionError("SUNLIGHT_GRAFANA_TOKEN is not set: a service-account token of that Grafana "
                             "(Administration > Users and access > Service accounts, role Admin)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProvisionError(f"SUNLIGHT_GRAFANA_URL must be http(s)://HOST[:PORT][/PATH], got {redact_url(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ProvisionError(f"SUNLIGHT_GRAFANA_URL has an invalid port: {redact_url(url)!r}") from None
    prefix = parts.path.strip("/")
    # grafana-client joins "{prefix}api": a sub-path Grafana (root_url .../grafana/) needs the slash.
    return GrafanaApi(auth=token, host=parts.hostname, port=port, protocol=parts.scheme,
                      url_path_prefix=f"{prefix}/" if prefix else "", timeout=timeout)


class _Grafana:
    """grafana-client calls with Grafana's answers turned into ProvisionError messages."""

    def __init__(self, api, url: str, token: str):
        self.api = api
        self.url = redact_url(url)
        self._token = token

    def call(self, what: str, function, *args, missing_ok: bool = False):
        """`function(*args)`; None for a 404 when `missing_ok`."""
        import niquests.exceptions
        from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaTimeoutError

        try:
            answer = function(*args)
        except GrafanaTimeoutError as exc:
            raise ProvisionError(f"cannot reach Grafana at {self.url}: no answer ({self._clean(exc)})") from None
        except GrafanaClientError as exc:
            if exc.status_code == 404 and missing_ok:
                return None
            if exc.status_code == 401:
                raise ProvisionError(f"Grafana at {self.url} refused the token (401 Unauthorized): check "
                                     f"SUNLIGHT_GRAFANA_TOKEN, a service-account token of this Grafana and "
                                     f"organisation") from None
            if exc.status_code == 403:
                raise ProvisionError(f"Grafana at {self.url} does not allow the token's service account to "
                                     f"{what} (403: {self._message(exc)}); give it the Admin role") from None
            raise ProvisionError(f"Grafana at {self.url} refused to {what} ({exc.status_code}: "
                                 f"{self._message(exc)})") from None
        except GrafanaException as exc:  # 5xx, or a transport error grafana-client wrapped
            status = f"{exc.status_code}: " if exc.status_code else ""
            raise ProvisionError(f"Grafana at {self.url} failed to {what} ({status}{self._message(exc)})") from None
        except (niquests.exceptions.JSONDecodeError, ValueError) as exc:
            raise self._not_grafana(what, self._clean(exc)) from None
        except niquests.exceptions.RequestException as exc:
            raise ProvisionError(f"cannot reach Grafana at {self.url}: {self._clean(exc)}") from None
        if answer is not None and not isinstance(answer, dict):
            raise self._not_grafana(what, f"a {type(answer).__name__} where a JSON object was due")
        return answer

    def _not_grafana(self, what: str, detail: str) -> ProvisionError:
        return ProvisionError(f"{self.url} does not answer like Grafana's HTTP API (to {what}: {detail}); "
                              f"is SUNLIGHT_GRAFANA_URL Grafana's root URL?")

    def _message(self, exc) -> str:
        response = exc.response
        text = response.get("message") if isinstance(response, dict) else (response or exc.message)
        return self._clean(text)

    def _clean(self, text) -> str:
        text = str(text).replace(self._token, "***") if self._token else str(text)
        return text if len(text) <= 300 else text[:300] + "..."


def push(api, url: str, token: str, dashboards: dict[str, dict], datasources: list[dict],
         update_secrets: bool = False, dry_run: bool = False) -> list[Change]:
    """Make Grafana hold the folder, `datasources` and `dashboards` (uid -> JSON), writing only
    what differs from what it has."""
    grafana = _Grafana(api, url, token)
    changes = [_push_folder(grafana, dry_run)]
    changes += [_push_datasource(grafana, d, update_secrets, dry_run) for d in datasources]
    changes += [_push_dashboard(grafana, uid, dashboards[uid], dry_run) for uid in sorted(dashboards)]
    return changes


def _done(action: str, dry_run: bool) -> str:
    return f"would be {action}" if dry_run else action


def _push_folder(grafana: _Grafana, dry_run: bool) -> Change:
    folders = grafana.api.folder
    existing = grafana.call(f"read the folder {FOLDER_UID}", folders.get_folder, FOLDER_UID, missing_ok=True)
    if existing is None:
        if not dry_run:
            grafana.call(f"create the folder {FOLDER_UID}", folders.create_folder, FOLDER_TITLE, FOLDER_UID)
        return Change("folder", FOLDER_UID, _done("created", dry_run), FOLDER_TITLE)
    if existing.get("title") == FOLDER_TITLE:
        return Change("folder", FOLDER_UID, "unchanged")
    if not dry_run:
        grafana.call(f"rename the folder {FOLDER_UID}",
                     lambda: folders.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True))
    return Change("folder", FOLDER_UID, _done("updated", dry_run), f"title {existing.get('title')!r}")


def _push_datasource(grafana: _Grafana, desired: dict, update_secrets: bool, dry_run: bool) -> Change:
    sources = grafana.api.datasource
    uid = desired["uid"]
    existing = grafana.call(f"read the datasource {uid}", sources.get_datasource_by_uid, uid, missing_ok=True)
    if existing is None:
        if not dry_run:
            grafana.call(f"create the datasource {uid} ({desired['name']})", sources.create_datasource, desired)
        return Change("datasource", uid, _done("created", dry_run), desired["type"])
    differs = sorted(k for k, v in desired.items() if k != "secureJsonData" and existing.get(k) != v)
    secrets = desired.get("secureJsonData") or {}
    stored = existing.get("secureJsonFields") or {}
    missing = sorted(k for k in secrets if not stored.get(k))
    why = differs + [f"{k} not set" for k in missing] + (["secrets on request"] if secrets and update_secrets else [])
    if not why:
        return Change("datasource", uid, "unchanged")
    if existing.get("readOnly"):
        raise ProvisionError(f"the datasource {uid} in Grafana at {grafana.url} is provisioned from files "
                             f"(read-only) and differs in {', '.join(why)}: change the provisioning file "
                             f"(sunlight dashboards export --provisioning) or remove it, not both")
    if not dry_run:
        grafana.call(f"update the datasource {uid}", sources.update_datasource_by_uid, uid, desired)
    return Change("datasource", uid, _done("updated", dry_run), ", ".join(why))


def _push_dashboard(grafana: _Grafana, uid: str, dashboard: dict, dry_run: bool) -> Change:
    boards = grafana.api.dashboard
    existing = grafana.call(f"read the dashboard {uid}", boards.get_dashboard, uid, missing_ok=True)
    body = portable(dashboard)
    if existing is not None:
        meta = existing.get("meta") or {}
        same = _comparable(existing.get("dashboard") or {}) == _comparable(body)
        in_folder = meta.get("folderUid") == FOLDER_UID
        if same and in_folder:
            return Change("dashboard", uid, "unchanged")
        if meta.get("provisioned"):
            raise ProvisionError(f"the dashboard {uid} in Grafana at {grafana.url} is provisioned from files and "
                                 f"cannot be saved through the API: use one way to provision it, not both "
                                 f"(docs/grafana.md)")
        why = ", ".join((["content"] if not same else []) + ([] if in_folder else [f"in folder {meta.get('folderUid') or 'General'!r}"]))
    payload = {"dashboard": body, "folderUid": FOLDER_UID, "overwrite": True, "message": PUSH_MESSAGE}
    if not dry_run:
        grafana.call(f"save the dashboard {uid}", boards.update_dashboard, payload)
    if existing is None:
        return Change("dashboard", uid, _done("created", dry_run), dashboard.get("title", ""))
    return Change("dashboard", uid, _done("updated", dry_run), why)


# ---------------------------------------------------------------------------------------------
# File provisioning


def dashboard_file_text(dashboard: dict) -> str:
    return json.dumps(portable(dashboard), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def provisioning_files(dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> dict[str, str]:
    """Relative path -> text of Grafana's provisioning YAML: both datasources (their settings and
    the password from the Grafana process's environment) and a file provider for the dashboards."""
    env = {k: "${" + v + "}" for k, v in PROVISIONING_ENV.items()}
    # The native protocol (port 9000 on the compose file's network); the plugin's default.
    clickhouse = clickhouse_datasource(ClickHouseTarget(host=env["host"], port=0, protocol="native",
                                                        username=env["user"], password=env["password"],
                                                        database=env["database"]))
    clickhouse["jsonData"]["port"] = env["port"]  # the plugin reads a port given as text too
    datasources = {"apiVersion": 1, "datasources": [
        {**_provisioned(clickhouse), "editable": False},
        {**_provisioned(prometheus_datasource(env["prometheus"])), "editable": False},
    ]}
    providers = {"apiVersion": 1, "providers": [{
        "name": "sunlight", "orgId": 1, "type": "file", "folder": FOLDER_TITLE, "folderUid": FOLDER_UID,
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
    }]}
    notes = {"datasources": "# Grafana reads these from its environment: " + ", ".join(PROVISIONING_ENV.values())
             + ".\n# CLICKHOUSE_DATABASE may stay unset (the user's default database).\n",
             "dashboards": f"# The dashboards' JSON (deploy/grafana/dashboards) is mounted at {dashboards_path}.\n"}
    return {f"{kind}/sunlight.yaml": _GENERATED + notes[kind] + yaml.safe_dump(body, allow_unicode=True, sort_keys=False)
            for kind, body in (("datasources", datasources), ("dashboards", providers))}


def _provisioned(datasource: dict) -> dict:
    order = ["name", "uid", "type", "access", "url", "isDefault", "jsonData", "secureJsonData"]
    return {k: datasource[k] for k in order if k in datasource} | {"orgId": 1}


def export(directory: Path, dashboards: dict[str, dict], provisioning: Path | None = None,
           dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> list[Path]:
    """Write each dashboard as DIRECTORY/<uid>.json (and with `provisioning` the provisioning
    YAML under it); returns the files written. Other *.json files in DIRECTORY are reported by
    `stale_files`, never removed."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for uid in sorted(dashboards):
        path = directory / f"{uid}.json"
        path.write_text(dashboard_file_text(dashboards[uid]), encoding="utf-8")
        written.append(path)
    if provisioning is not None:
        for relative, text in provisioning_files(dashboards_path).items():
            path = provisioning / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale_files(directory: Path, dashboards: dict[str, dict]) -> list[Path]:
    """JSON files in `directory` that are no dashboard of `dashboards` (a file provider would
    still load them)."""
    return sorted(p for p in directory.glob("*.json") if p.stem not in dashboards)


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return parts._replace(netloc=f"{parts.username}:***@{parts.hostname}{port}").geturl()
