"""`sunlight dashboards push` against a recording stub of Grafana's HTTP API, and `export` against
the files committed in deploy/grafana.

The stub answers the paths grafana-client calls with the status codes and shapes Grafana 11's
HTTP API documents (folders, datasources by uid, dashboards by uid and /api/dashboards/db),
keeps what it is sent in memory, refuses any request without the right Bearer token (401, as
Grafana does), and records every request.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from dashboards.provision import (CLICKHOUSE_TYPE, CLICKHOUSE_UID, FOLDER_TITLE, FOLDER_UID, PROMETHEUS_TYPE,
                                  PROMETHEUS_UID, ClickHouseTarget, ProvisionError, built_dashboards,
                                  clickhouse_datasource, connect, prometheus_datasource, provisioning_files, push)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glsa_sunlightTestToken0123456789_abcdef"
PASSWORD = "s3cret-datasource-pw"
CLICKHOUSE_URL = "http://grafana_scjg@clickhouse.internal:8123/sunlight"


# ---------------------------------------------------------------------------------------------
# The stub


@dataclass
class Request:
    method: str
    path: str
    query: dict
    authorization: str | None
    body: object

    @property
    def write(self) -> bool:
        return self.method != "GET"


class GrafanaStub:
    """Grafana 11's folder, datasource and dashboard API, in memory, on loopback."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.not_grafana = False
        self.requests: list[Request] = []
        self.folders: dict[str, dict] = {}
        self.datasources: dict[str, dict] = {}
        self.secrets: dict[str, dict] = {}  # datasource uid -> secureJsonData (never answered)
        self.dashboards: dict[str, dict] = {}  # uid -> {"dashboard": ..., "folderUid": ..., "provisioned": ...}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  self.headers.get("Authorization"), body)
                with stub._lock:
                    stub.requests.append(request)
                    status, answer = stub.answer(request)
                kind = "application/json"
                if stub.not_grafana:  # some other web server at that URL
                    status, answer, kind = 200, "<html><body>Welcome to nginx!</body></html>", "text/html"
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.write]

    def answer(self, r: Request) -> tuple[int, object]:
        if r.authorization != f"Bearer {self.token}":
            return 401, {"extra": None, "message": "Invalid API key", "messageId": "api-keys.invalid",
                         "statusCode": 401, "traceID": ""}
        routes = [
            ("GET", r"/api/folders/([^/]+)", self.get_folder),
            ("POST", r"/api/folders", self.create_folder),
            ("PUT", r"/api/folders/([^/]+)", self.update_folder),
            ("GET", r"/api/datasources/uid/([^/]+)", self.get_datasource),
            ("POST", r"/api/datasources", self.create_datasource),
            ("PUT", r"/api/datasources/uid/([^/]+)", self.update_datasource),
            ("GET", r"/api/dashboards/uid/([^/]+)", self.get_dashboard),
            ("POST", r"/api/dashboards/db", self.save_dashboard),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, r.path)
            if method == r.method and match:
                return handler(r, *match.groups())
        return 404, {"message": "Not found"}

    # Folders ------------------------------------------------------------------------------
    def _folder_view(self, folder: dict) -> dict:
        return {**folder, "url": f"/dashboards/f/{folder['uid']}/", "hasAcl": False, "canSave": True,
                "canEdit": True, "canAdmin": True, "canDelete": True, "createdBy": "sa-sunlight",
                "created": "2026-06-01T12:00:00Z", "updatedBy": "sa-sunlight", "updated": "2026-06-01T12:00:00Z"}

    def get_folder(self, r, uid):
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        return 200, self._folder_view(self.folders[uid])

    def create_folder(self, r):
        body = r.body or {}
        if not body.get("title"):
            return 400, {"message": "folder title cannot be empty"}
        uid = body.get("uid") or f"f{next(self._ids)}"
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        self.folders[uid] = {"id": next(self._ids), "uid": uid, "orgId": 1, "title": body["title"], "version": 1}
        return 200, self._folder_view(self.folders[uid])

    def update_folder(self, r, uid):
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        folder = self.folders[uid]
        if not r.body.get("overwrite") and r.body.get("version") != folder["version"]:
            return 412, {"message": "The folder has been changed by someone else", "status": "version-mismatch"}
        folder.update(title=r.body.get("title", folder["title"]), version=folder["version"] + 1)
        return 200, self._folder_view(folder)

    # Datasources --------------------------------------------------------------------------
    def _stored_datasource(self, body: dict, id_: int, version: int) -> dict:
        stored = {"id": id_, "uid": body["uid"], "orgId": 1, "name": body["name"], "type": body["type"],
                  "typeLogoUrl": f"public/plugins/{body['type']}/img/logo.svg", "access": body.get("access", "proxy"),
                  "url": body.get("url", ""), "user": body.get("user", ""), "database": body.get("database", ""),
                  "basicAuth": body.get("basicAuth", False), "basicAuthUser": body.get("basicAuthUser", ""),
                  "withCredentials": body.get("withCredentials", False), "isDefault": body.get("isDefault", False),
                  "jsonData": body.get("jsonData") or {}, "version": version, "readOnly": False}
        return stored

    def _datasource_view(self, uid: str) -> dict:
        return {**self.datasources[uid], "secureJsonFields": {k: True for k in self.secrets.get(uid, {})}}

    def get_datasource(self, r, uid):
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        return 200, self._datasource_view(uid)

    def create_datasource(self, r):
        body = r.body
        if not body.get("name") or not body.get("type"):
            return 400, {"message": "bad request data"}
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        if body.get("uid") in self.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        uid = body["uid"]
        self.datasources[uid] = self._stored_datasource(body, next(self._ids), 1)
        self.secrets[uid] = dict(body.get("secureJsonData") or {})
        view = self._datasource_view(uid)
        return 200, {"datasource": view, "id": view["id"], "message": "Datasource added", "name": view["name"]}

    def update_datasource(self, r, uid):
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        old = self.datasources[uid]
        if old["readOnly"]:
            return 403, {"message": "Cannot update read-only data source"}
        self.datasources[uid] = self._stored_datasource({**r.body, "uid": uid}, old["id"], old["version"] + 1)
        self.secrets[uid].update(r.body.get("secureJsonData") or {})  # secrets not sent are kept
        view = self._datasource_view(uid)
        return 200, {"datasource": view, "id": view["id"], "message": "Datasource updated", "name": view["name"]}

    # Dashboards ---------------------------------------------------------------------------
    def get_dashboard(self, r, uid):
        if uid not in self.dashboards:
            return 404, {"message": "Dashboard not found"}
        entry = self.dashboards[uid]
        folder = self.folders.get(entry["folderUid"])
        meta = {"type": "db", "canSave": True, "canEdit": True, "canAdmin": True, "canStar": True, "canDelete": True,
                "slug": uid, "url": f"/d/{uid}/{uid}", "expires": "0001-01-01T00:00:00Z",
                "created": "2026-06-01T12:00:00Z", "updated": "2026-06-01T12:00:00Z", "updatedBy": "sa-sunlight",
                "createdBy": "sa-sunlight", "version": entry["dashboard"]["version"], "hasAcl": False,
                "isFolder": False, "folderId": folder["id"] if folder else 0, "folderUid": entry["folderUid"],
                "folderTitle": folder["title"] if folder else "Dashboards",
                "folderUrl": f"/dashboards/f/{entry['folderUid']}/" if folder else "",
                "provisioned": entry["provisioned"], "provisionedExternalId": ""}
        return 200, {"dashboard": copy.deepcopy(entry["dashboard"]), "meta": meta}

    def save_dashboard(self, r):
        body = r.body
        dashboard = copy.deepcopy(body.get("dashboard") or {})
        if not dashboard.get("title"):
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            return 400, {"message": "folder not found", "status": "not-found"}
        uid = dashboard.get("uid") or f"d{next(self._ids)}"
        existing = self.dashboards.get(uid)
        if existing is not None:
            if existing["provisioned"]:
                return 400, {"message": "Cannot save provisioned dashboard"}
            if not body.get("overwrite"):
                if dashboard.get("id") is None:
                    return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
                if dashboard.get("version") != existing["dashboard"]["version"]:
                    return 412, {"message": "The dashboard has been changed by someone else",
                                 "status": "version-mismatch"}
            dashboard.update(id=existing["dashboard"]["id"], uid=uid, version=existing["dashboard"]["version"] + 1)
        else:
            dashboard.update(id=next(self._ids), uid=uid, version=1)
        self.dashboards[uid] = {"dashboard": dashboard, "folderUid": folder_uid, "provisioned": False}
        return 200, {"id": dashboard["id"], "uid": uid, "url": f"/d/{uid}/{uid}", "status": "success",
                     "version": dashboard["version"], "slug": uid}


@pytest.fixture
def grafana():
    stub = GrafanaStub()
    stub.thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()


# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def dashboards():
    return built_dashboards()


def datasources(password: str | None = PASSWORD, host: str = "clickhouse.internal") -> list[dict]:
    target = ClickHouseTarget.from_url(CLICKHOUSE_URL.replace("clickhouse.internal", host), password=password)
    return [clickhouse_datasource(target), prometheus_datasource("http://prometheus:9090")]


def push_api(stub: GrafanaStub, dashboards: dict, token: str = TOKEN, **options):
    return push(connect(stub.url, token), stub.url, token, dashboards, datasources(), **options)


def cli_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNLIGHT_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
               **changes)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def push_cli(stub_url: str, token: str = TOKEN, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(SUNLIGHT_GRAFANA_URL=stub_url, SUNLIGHT_GRAFANA_TOKEN=token,
                  SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD=PASSWORD)
    return run_cli("-v", "dashboards", "push", "--clickhouse-url", CLICKHOUSE_URL,
                   "--prometheus-url", "http://prometheus:9090", *args, env=env)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def datasource_uids(node) -> set[str]:
    """The uids of every {"datasource": {"uid": ...}} in a dashboard's JSON."""
    found = set()
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and isinstance(source.get("uid"), str):
            found.add(source["uid"])
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= datasource_uids(value)
    return found


def without_id_and_version(dashboard: dict) -> dict:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


# ---------------------------------------------------------------------------------------------
# Pushing


def test_first_push_creates_the_folder_the_datasources_and_every_dashboard(grafana, dashboards):
    result = push_cli(grafana.url)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert TOKEN not in output and PASSWORD not in output

    assert all(r.authorization == f"Bearer {TOKEN}" for r in grafana.requests)
    writes = [(r.method, r.path) for r in grafana.writes]
    assert writes == ([("POST", "/api/folders")] + [("POST", "/api/datasources")] * 2
                      + [("POST", "/api/dashboards/db")] * len(dashboards))
    # Each object is read before it is written.
    reads = [r.path for r in grafana.requests if not r.write]
    assert reads == ([f"/api/folders/{FOLDER_UID}", f"/api/datasources/uid/{CLICKHOUSE_UID}",
                      f"/api/datasources/uid/{PROMETHEUS_UID}"]
                     + [f"/api/dashboards/uid/{uid}" for uid in sorted(dashboards)])

    assert grafana.writes[0].body == {"title": FOLDER_TITLE, "uid": FOLDER_UID}
    clickhouse, prometheus = grafana.writes[1].body, grafana.writes[2].body
    assert clickhouse == {
        "uid": CLICKHOUSE_UID, "name": "阳光监察 ClickHouse", "type": CLICKHOUSE_TYPE, "access": "proxy",
        "isDefault": False,
        "jsonData": {"host": "clickhouse.internal", "port": 8123, "protocol": "http", "secure": False,
                     "username": "grafana_scjg", "defaultDatabase": "sunlight"},
        "secureJsonData": {"password": PASSWORD}}
    assert prometheus == {"uid": PROMETHEUS_UID, "name": "阳光监察 Prometheus", "type": PROMETHEUS_TYPE,
                          "access": "proxy", "url": "http://prometheus:9090", "isDefault": False,
                          "jsonData": {"httpMethod": "POST"}}
    assert grafana.secrets[CLICKHOUSE_UID] == {"password": PASSWORD}

    saved = {}
    for request in grafana.writes[3:]:
        body = request.body
        assert body["folderUid"] == FOLDER_UID and body["overwrite"] is True
        assert body["message"] == "sunlight dashboards push"
        assert body["dashboard"]["id"] is None and "version" not in body["dashboard"]
        saved[body["dashboard"]["uid"]] = body["dashboard"]
    assert set(saved) == set(dashboards)
    for uid, dashboard in dashboards.items():
        assert without_id_and_version(saved[uid]) == without_id_and_version(dashboard)
        assert grafana.dashboards[uid]["folderUid"] == FOLDER_UID
    # Every datasource the dashboards name is one the push created (or Grafana's built-in ones).
    named = {uid for uid in datasource_uids(list(dashboards.values())) if not uid.startswith(("-- ", "grafana"))}
    assert named == {CLICKHOUSE_UID, PROMETHEUS_UID}
    assert f"{len(dashboards) + 3} written, 0 unchanged" in result.stderr


def test_a_second_push_only_reads(grafana, dashboards):
    push_api(grafana, dashboards)
    first = len(grafana.requests)
    result = push_cli(grafana.url)
    assert result.returncode == 0, result.stderr
    second = grafana.requests[first:]
    assert [r.method for r in second] == ["GET"] * (3 + len(dashboards))
    assert f"0 written, {len(dashboards) + 3} unchanged" in result.stderr


def test_a_changed_dashboard_is_updated_and_only_it(grafana, dashboards):
    push_api(grafana, dashboards)
    uid = sorted(dashboards)[0]
    version = grafana.dashboards[uid]["dashboard"]["version"]

    # Someone edits it in Grafana: the push puts the code's version back.
    grafana.dashboards[uid]["dashboard"]["title"] = "改过的标题"
    start = len(grafana.requests)
    changes = push_api(grafana, dashboards)
    writes = [r for r in grafana.requests[start:] if r.write]
    assert [(r.method, r.path, r.body["dashboard"]["uid"]) for r in writes] == [("POST", "/api/dashboards/db", uid)]
    assert grafana.dashboards[uid]["dashboard"]["title"] == dashboards[uid]["title"]
    assert grafana.dashboards[uid]["dashboard"]["version"] == version + 1
    assert [c.uid for c in changes if c.action != "unchanged"] == [uid]

    # The code changes one dashboard: only that one is saved.
    other = sorted(dashboards)[-1]
    changed = copy.deepcopy(dashboards)
    changed[other]["description"] = "新的说明"
    start = len(grafana.requests)
    push_api(grafana, changed)
    writes = [r for r in grafana.requests[start:] if r.write]
    assert [(r.path, r.body["dashboard"]["uid"]) for r in writes] == [("/api/dashboards/db", other)]
    assert grafana.dashboards[other]["dashboard"]["description"] == "新的说明"

    # A dashboard moved out of the folder is moved back.
    grafana.dashboards[other]["folderUid"] = ""
    start = len(grafana.requests)
    push_api(grafana, changed)
    writes = [r for r in grafana.requests[start:] if r.write]
    assert [(r.body["dashboard"]["uid"], r.body["folderUid"]) for r in writes] == [(other, FOLDER_UID)]
    start = len(grafana.requests)
    push_api(grafana, changed)
    assert not [r for r in grafana.requests[start:] if r.write]


def test_datasources_and_folder_are_put_back_and_the_password_is_kept(grafana, dashboards):
    push_api(grafana, dashboards)
    grafana.datasources[CLICKHOUSE_UID]["jsonData"]["host"] = "elsewhere"
    grafana.folders[FOLDER_UID]["title"] = "别的名字"
    start = len(grafana.requests)
    push_api(grafana, dashboards)
    writes = [r for r in grafana.requests[start:] if r.write]
    assert [(r.method, r.path) for r in writes] == [("PUT", f"/api/folders/{FOLDER_UID}"),
                                                   ("PUT", f"/api/datasources/uid/{CLICKHOUSE_UID}")]
    assert writes[0].body == {"title": FOLDER_TITLE, "overwrite": True}
    assert writes[1].body["jsonData"]["host"] == "clickhouse.internal"
    assert grafana.folders[FOLDER_UID]["title"] == FOLDER_TITLE
    assert grafana.datasources[CLICKHOUSE_UID]["jsonData"]["host"] == "clickhouse.internal"
    assert grafana.secrets[CLICKHOUSE_UID] == {"password": PASSWORD}

    # Grafana never shows the stored password: it is rewritten only on request, or when none is set.
    start = len(grafana.requests)
    push_api(grafana, dashboards, update_secrets=True)
    writes = [r for r in grafana.requests[start:] if r.write]
    assert [(r.method, r.path, r.body["secureJsonData"]) for r in writes] == [
        ("PUT", f"/api/datasources/uid/{CLICKHOUSE_UID}", {"password": PASSWORD})]
    grafana.secrets[CLICKHOUSE_UID].clear()
    start = len(grafana.requests)
    push_api(grafana, dashboards)
    assert [r.path for r in grafana.requests[start:] if r.write] == [f"/api/datasources/uid/{CLICKHOUSE_UID}"]
    assert grafana.secrets[CLICKHOUSE_UID] == {"password": PASSWORD}


def test_dry_run_only_reads_and_says_what_would_change(grafana, dashboards):
    result = push_cli(grafana.url, TOKEN, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert grafana.requests and not grafana.writes
    assert f"folder {FOLDER_UID}: would be created" in result.stderr
    assert f"dry run, Grafana at {grafana.url}: {len(dashboards) + 3} to write" in result.stderr


def test_a_refused_token_is_a_clear_error(grafana):
    result = push_cli(grafana.url, "glsa_wrongToken_0000000000")
    assert result.returncode == 2
    assert f"sunlight: Grafana at {grafana.url} refused the token (401 Unauthorized)" in result.stderr
    assert "SUNLIGHT_GRAFANA_TOKEN" in result.stderr and "Traceback" not in result.stderr
    assert "glsa_wrongToken" not in result.stderr + result.stdout and PASSWORD not in result.stderr
    assert len(grafana.requests) == 1 and not grafana.writes  # it stops at the first refusal


def test_an_unreachable_grafana_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    result = push_cli(url)
    assert result.returncode == 2
    assert result.stderr.startswith(f"sunlight: cannot reach Grafana at {url}")
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr and PASSWORD not in result.stderr


def test_a_url_that_is_not_grafana_is_a_clear_error(grafana):
    grafana.not_grafana = True
    result = push_cli(grafana.url)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"sunlight: {grafana.url} does not answer like Grafana's HTTP API")
    assert len(grafana.requests) == 1


def test_a_missing_setting_is_a_clear_error(grafana):
    env = cli_env(SUNLIGHT_GRAFANA_TOKEN=TOKEN)
    result = run_cli("dashboards", "push", "--clickhouse-url", CLICKHOUSE_URL, env=env)
    assert (result.returncode, result.stderr.splitlines()[0]) == (
        2, "sunlight: SUNLIGHT_GRAFANA_URL is not set: the Grafana to provision, e.g. http://grafana:3000")
    env = cli_env(SUNLIGHT_GRAFANA_URL=grafana.url)
    result = run_cli("dashboards", "push", "--clickhouse-url", CLICKHOUSE_URL, env=env)
    assert result.returncode == 2 and result.stderr.startswith("sunlight: SUNLIGHT_GRAFANA_TOKEN is not set")
    env = cli_env(SUNLIGHT_GRAFANA_URL=grafana.url, SUNLIGHT_GRAFANA_TOKEN=TOKEN)
    result = run_cli("dashboards", "push", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("sunlight: the ClickHouse server Grafana queries is not set: --clickhouse-url")
    assert not grafana.requests


def test_a_password_in_the_clickhouse_url_is_used_and_never_shown(grafana, dashboards):
    env = cli_env(SUNLIGHT_GRAFANA_URL=grafana.url, SUNLIGHT_GRAFANA_TOKEN=TOKEN)
    result = run_cli("-v", "dashboards", "push", "--clickhouse-url", f"https://viewer:{PASSWORD}@ch.example:8443/db",
                     env=env)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stderr + result.stdout and TOKEN not in result.stderr + result.stdout
    created = next(r.body for r in grafana.writes if r.path == "/api/datasources" and r.body["uid"] == CLICKHOUSE_UID)
    assert created["jsonData"] == {"host": "ch.example", "port": 8443, "protocol": "http", "secure": True,
                                   "username": "viewer", "defaultDatabase": "db"}
    assert created["secureJsonData"] == {"password": PASSWORD}


def test_the_pipelines_store_and_a_replaced_users_password_are_never_used(grafana, dashboards):
    """Grafana never reads as the pipeline's user (SUNLIGHT_CLICKHOUSE), and a URL's password is
    never given to another user (--clickhouse-user)."""
    env = cli_env(SUNLIGHT_GRAFANA_URL=grafana.url, SUNLIGHT_GRAFANA_TOKEN=TOKEN,
                  SUNLIGHT_CLICKHOUSE=f"https://pipeline:{PASSWORD}@ch.example:8443/db")
    result = run_cli("dashboards", "push", env=env)
    assert result.returncode == 2 and "--clickhouse-url" in result.stderr, result.stderr
    result = run_cli("dashboards", "push", "--clickhouse-url", f"https://viewer:{PASSWORD}@ch.example:8443/db",
                     "--clickhouse-user", "grafana_region_a", env=env)
    assert result.returncode == 2
    assert "password of ClickHouse user grafana_region_a is not set" in result.stderr, result.stderr
    assert not grafana.requests and PASSWORD not in result.stderr
    result = run_cli("dashboards", "push", "--clickhouse-url", "https://viewer@ch.example:8443/db",
                     "--clickhouse-user", "grafana_region_a",
                     env={**env, "SUNLIGHT_GRAFANA_CLICKHOUSE_PASSWORD": "region-a-secret"})
    assert result.returncode == 0, result.stderr
    created = next(r.body for r in grafana.writes if r.path == "/api/datasources" and r.body["uid"] == CLICKHOUSE_UID)
    assert created["jsonData"]["username"] == "grafana_region_a"
    assert created["secureJsonData"] == {"password": "region-a-secret"}


def test_file_provisioned_objects_are_not_fought_over(grafana, dashboards):
    push_api(grafana, dashboards)
    grafana.datasources[CLICKHOUSE_UID].update(readOnly=True)
    grafana.datasources[CLICKHOUSE_UID]["jsonData"]["port"] = 9000
    with pytest.raises(ProvisionError, match="provisioned from files .read-only. and differs in jsonData"):
        push_api(grafana, dashboards)
    grafana.datasources[CLICKHOUSE_UID]["jsonData"]["port"] = 8123
    uid = sorted(dashboards)[0]
    grafana.dashboards[uid].update(provisioned=True)
    grafana.dashboards[uid]["dashboard"]["title"] = "x"
    with pytest.raises(ProvisionError, match=f"the dashboard {uid} .* is provisioned from files"):
        push_api(grafana, dashboards)
    assert not [r for r in grafana.writes if r.method == "PUT"]


def test_a_datasource_of_the_same_name_under_another_uid_is_named(grafana, dashboards):
    grafana.datasources["hand-made"] = grafana._stored_datasource(
        {"uid": "hand-made", "name": "阳光监察 ClickHouse", "type": CLICKHOUSE_TYPE}, 99, 1)
    with pytest.raises(ProvisionError) as refused:
        push_api(grafana, dashboards)
    assert str(refused.value) == (f"Grafana at {grafana.url} refused to create the datasource {CLICKHOUSE_UID} "
                                  f"(阳光监察 ClickHouse) (409: data source with the same name already exists)")
    assert [r.path for r in grafana.writes] == ["/api/folders", "/api/datasources"]


def test_grafana_under_a_sub_path_is_reached_there(grafana, dashboards):
    api = connect(grafana.url + "/grafana/", TOKEN)
    assert api.client.url == f"{grafana.url}/grafana/api"
    assert connect(grafana.url, TOKEN).client.url == f"{grafana.url}/api"


# ---------------------------------------------------------------------------------------------
# Exporting


def test_export_writes_every_dashboard_and_the_provisioning_files(tmp_path, dashboards):
    result = run_cli("dashboards", "export", str(tmp_path / "dashboards"), "--provisioning",
                     str(tmp_path / "provisioning"), env=cli_env())
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "dashboards").iterdir())
    assert files == sorted(f"{uid}.json" for uid in dashboards)
    for uid, dashboard in dashboards.items():
        exported = json.loads((tmp_path / "dashboards" / f"{uid}.json").read_text(encoding="utf-8"))
        assert exported["id"] is None and without_id_and_version(exported) == without_id_and_version(dashboard)

    sources = yaml.safe_load((tmp_path / "provisioning/datasources/sunlight.yaml").read_text(encoding="utf-8"))
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert {uid: d["type"] for uid, d in by_uid.items()} == {CLICKHOUSE_UID: CLICKHOUSE_TYPE,
                                                             PROMETHEUS_UID: PROMETHEUS_TYPE}
    clickhouse = by_uid[CLICKHOUSE_UID]
    assert clickhouse["jsonData"] == {"host": "${CLICKHOUSE_HOST}", "port": "${CLICKHOUSE_PORT}",
                                      "protocol": "native", "secure": False,
                                      "username": "${GRAFANA_CLICKHOUSE_USER}",
                                      "defaultDatabase": "${CLICKHOUSE_DATABASE}"}
    assert clickhouse["secureJsonData"] == {"password": "${GRAFANA_CLICKHOUSE_PASSWORD}"}
    assert by_uid[PROMETHEUS_UID]["url"] == "${PROMETHEUS_URL}"
    providers = yaml.safe_load((tmp_path / "provisioning/dashboards/sunlight.yaml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    assert (provider["type"], provider["folder"], provider["folderUid"]) == ("file", FOLDER_TITLE, FOLDER_UID)
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    # A file that is no dashboard any more is named (a file provider would still load it).
    (tmp_path / "dashboards" / "gone.json").write_text("{}")
    result = run_cli("dashboards", "export", str(tmp_path / "dashboards"), env=cli_env())
    assert result.returncode == 0 and "gone.json is no dashboard any more" in result.stderr

    # A file where a directory is to be: one line and nothing written (a traceback before, or the
    # dashboards written and then the provisioning refused: found by a black-box test).
    (tmp_path / "a-file").write_text("")
    for args in ((str(tmp_path / "a-file"),), (str(tmp_path / "elsewhere"), "--provisioning", str(tmp_path / "a-file"))):
        result = run_cli("dashboards", "export", *args, env=cli_env())
        assert result.returncode == 2 and "a file is there, not a directory" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "elsewhere").exists()


def test_the_committed_deploy_files_equal_a_fresh_export(tmp_path, dashboards):
    """deploy/grafana cannot drift from the code: regenerate it with
    `sunlight dashboards export deploy/grafana/dashboards --provisioning deploy/grafana/provisioning`."""
    from dashboards.provision import export

    export(tmp_path / "dashboards", dashboards, tmp_path / "provisioning")
    deploy = ROOT / "deploy" / "grafana"
    for part in ("dashboards", "provisioning"):
        fresh = {p.relative_to(tmp_path / part): p.read_bytes() for p in (tmp_path / part).rglob("*") if p.is_file()}
        committed = {p.relative_to(deploy / part): p.read_bytes() for p in (deploy / part).rglob("*")
                     if p.is_file() and p.suffix in (".json", ".yaml")}
        assert sorted(committed) == sorted(fresh), f"deploy/grafana/{part} differs from a fresh export"
        for path, data in fresh.items():
            assert committed[path] == data, f"deploy/grafana/{part}/{path} differs from a fresh export"
    assert set(provisioning_files()) == {"datasources/sunlight.yaml", "dashboards/sunlight.yaml"}


def test_clickhouse_urls_become_the_plugins_settings():
    def settings(url, **kw):
        return clickhouse_datasource(ClickHouseTarget.from_url(url, **kw))["jsonData"]

    assert settings("clickhouse://viewer@ch:9000/sunlight") == {
        "host": "ch", "port": 9000, "protocol": "native", "secure": False, "username": "viewer",
        "defaultDatabase": "sunlight"}
    assert settings("clickhouses://ch") == {"host": "ch", "port": 9440, "protocol": "native", "secure": True,
                                            "username": "default", "defaultDatabase": "default"}
    assert settings("https://ch/proxy/clickhouse/db", user="u")["path"] == "proxy/clickhouse"
    assert "secureJsonData" not in clickhouse_datasource(ClickHouseTarget.from_url("http://ch:8123"))
    with pytest.raises(ProvisionError, match=r"must look like http://HOST:8123/DATABASE") as refused:
        ClickHouseTarget.from_url(f"ftp://u:{PASSWORD}@ch/db")
    assert PASSWORD not in str(refused.value) and "u:***@ch" in str(refused.value)
    assert PASSWORD not in repr(ClickHouseTarget.from_url(f"http://u:{PASSWORD}@ch/db"))
