"""The console's web application (Starlette, server-side Jinja2 pages) and `sunlight serve`.

Inspectors see the live alert list (the filters of `sunlight alerts export`), a case's file (its
events, every alert with its evidence in words, its tickets) and act on tickets: open one from an
alert, accept, return, close. A department head signs in too and sees only their department
(the same `sinks.scope.Scope` as `alerts export --department`), and may answer its tickets.
Departments answer through the signed link in their notice (`streams.console.links`), no account.

Every action is a record on the `ticket-actions` topic (docs/tickets.md), with an `action_id`
made when the form was drawn, so a form sent twice is one action; the page then waits a little
for the pipeline to apply it (or to refuse it, in the dead letters) and says which.

`serve` on the embedded defaults runs the pipeline in this process (as `demo` does), so that the
actions are applied; with SUNLIGHT_KAFKA and SUNLIGHT_CLICKHOUSE it only reads the store and
publishes the actions for the workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from alerts.describe import alert_text, describe_evidence, deadline_moment, local_moment, moment
from alerts.model import RULE_TITLE, SEVERITY_TITLE, Rule, Severity
from alerts.notices import RECIPIENT_TITLE
from alerts.tickets import (HAND_OPENED, INSPECTORS, KIND_TITLE, MAX_TEXT_CHARS, STATUS_TITLE, STEP_TITLE,
                            notice_outcome, Action, ActionKind, ActionRefused, actor_title, case_of, escalation_title,
                            rounds, rounds_with_notices, ticket_id as make_ticket_id)
from sinks.scope import Scope, UnknownScope
from streams.console.auth import COOKIE, ROLE_TITLE, Sessions, Throttle, User, Users, check_secret_key, loose_mode
from streams.clock import wall_now
from streams.console.links import LinkRefused, Links
from streams.internal_wire import ticket_action
from streams.settings import Settings

log = logging.getLogger(__name__)


def region_names(settings: Settings) -> Mapping[str, str]:
    """Region codes' names (滨湖区 ...), from the city's rulebook (SUNLIGHT_RULEBOOK, else the
    default: `alerts.scoring.load_rulebook`): administrative division codes are national, so a
    code it does not name is shown as it is."""
    from streams.catalog_source import city_rulebook

    return city_rulebook(settings.rulebook).region_names


HERE = Path(__file__).parent
ACTION_WAIT_SECONDS = 15.0
MAX_ALERTS_SHOWN = 300
MAX_TICKETS_SHOWN = 200
MAX_LETTERS_SHOWN = 200
# Failed sign-ins allowed in SIGN_IN_WINDOW seconds, per user name and per client address (an
# office behind one address shares its allowance), before 429.
SIGN_IN_FAILURES_PER_NAME = 5
SIGN_IN_FAILURES_PER_ADDRESS = 20
SIGN_IN_WINDOW = 300.0
ACTIVE = ("open", "returned")
RESULT_TEXT = {
    "applied": "已办理。",
    # The same form posted again with another text (the browser's back button, an edit, a second
    # submit): the action was applied once, as first posted (before, both posts read 已办理, and the
    # second text was dropped without a word: found by a black-box test).
    "applied_earlier": "此表单此前已提交并已办理，以先前提交的内容为准，本次提交的内容未采用。",
    "pending": "已提交，系统正在处理，请稍后刷新页面查看结果。",
    # "If still needed": after a close there is nothing to do again (found by a black-box test).
    "stale_version": "督办件已有更新，操作未执行：请查看最新情况，如仍需办理，再重新操作。",
    "not_allowed": "督办件当前状态不允许此操作。",
    "already_open": "该督办件已由他人发起，正在办理中，无需重复发起。",
    "wrong_department": "无权对该督办件执行此操作。",
    "unknown_ticket": "督办件不存在。",
    "unknown_alert": "预警不存在或已撤回，未能发起督办。",
    "text_too_long": f"内容过长（最多 {MAX_TEXT_CHARS} 字），请删减后重新提交。",
    "empty_reply": "请填写核实情况及整改措施。",
    "empty_return": "请填写退回理由。",
    "empty_close": "请填写办结理由。",
    "malformed_action": "内容不完整，操作未执行。",
}
def result_text(result: str) -> str | None:
    """An action's result in words; a refusal this page has no words for, said as one (before, a
    reason missing here, `internal_error` say, showed nothing at all: found by review)."""
    if not result:
        return None
    return RESULT_TEXT.get(result, "操作未执行，请稍后刷新页面查看督办件的最新情况，或联系运维人员。")


# Results after which a form's text is not needed again: the action was applied, or is on its way.
SETTLED_RESULTS = ("applied", "pending")
DRAFT_KEPT = "您填写的内容尚未提交，已保留在下方：请确认最新情况后再次提交。"
DRAFT_LOST = "您填写的内容未能提交，已保留在下方：请复制保存，再通过最新督办通知中的链接或 OA 系统提交。"
# The same, to a signed-in user of the console (an inspector or a head), whose way back is the case page.
DRAFT_LOST_SIGNED_IN = "您填写的内容未能提交，已保留在下方：请复制保存，回到办件页面刷新后再次提交。"
DRAFT_LOST_SIGN_IN = "您填写的内容未能提交，已保留在下方：请复制保存，重新登录后回到办件页面再次提交。"
# The note beside a text refused before it was sent (blank, or too long): nothing changed meanwhile.
TO_FIX = frozenset({"text_too_long", "empty_reply", "empty_return", "empty_close"})
DRAFT_TO_FIX = "请按提示修改后再次提交。"


def kept_text(text: str) -> str:
    """What of a form's text is kept to be shown again (a text far over the limit is cut)."""
    return text[:20 * MAX_TEXT_CHARS]


def actor_named(form) -> str:
    """The name a reply gives (`actor`), spaces made single, at most 50 characters."""
    return " ".join(field(form, "actor").split())[:50]


LINK_REFUSAL = {
    "invalid": "此答复链接无效：链接内容不完整或已被改动。请使用督办通知中的原始链接。",
    # Not "ask for the notice again": nothing sends a delivered notice again (found by a black-box
    # test); an inspector records a reply in the department's name, as the notices without a link say.
    "expired": "此答复链接已过期。请联系督办人员代为录入答复，或经 OA 系统提交答复。",
    "other_ticket": "此答复链接不能查看或答复该督办件。",
    "missing": "此答复链接对应的督办件不存在。",
    "superseded": "此答复链接属于该督办件此前的一次督办，已失效。"
                  "请使用最新督办通知中的链接。",
}
INSPECTOR_KINDS = ("open", "accept", "return", "close")
TEXT_NEEDED = ("reply", "return", "close")
EMPTY_TEXT = {"reply": "empty_reply", "return": "empty_return", "close": "empty_close"}  # what each lacks
ACTION_ID = re.compile(r"^[0-9a-f]{32}$")
OPENINGS = ("opened", "open", "reopened")  # the changes that start a round, each with its notice and link


# -- the store and the actions topic ------------------------------------------------------------------

def field(form, name: str) -> str:
    """A form's field as text; none when it is not text: a file part of a multipart form, whose
    description (`UploadFile(filename=...)`) was recorded as a reply's text before."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def form_version(form) -> int | None:
    """The ticket version a form was drawn at; None when it is not one (a version is a small
    count: a number past 2**31 is no version, and would not fit the action's record)."""
    try:
        version = int(field(form, "version"))
    except ValueError:
        return None
    return version if 0 <= version < 2 ** 31 else None


def ticket_of(alert: Mapping, tickets: Mapping[str, dict]) -> dict | None:
    """The ticket an alert names, from its case's tickets by id (`stored_tickets(settling=True)`):
    its case's for its rule, as `status` 'settling' while it settles or while its next round is
    coming for the alert (it opens by itself: 未督办 led inspectors to open by hand what was on its
    way, and a closed ticket's 已办结 read as the card's handling), as the dashboards' 待处置 reads
    it (`dashboards.queries._ROUND_COMING`); none for a withdrawn alert's settling ticket, nor for a
    card raised after a ticket opened by hand was closed (opened again by hand only)."""
    ticket = tickets.get(f"{alert['case_id']}/{alert['rule']}")
    if ticket is None or ticket["status"] not in ("settling", "closed", "withdrawn"):
        return ticket
    withdrawn = alert["status"] == "withdrawn"
    if ticket["status"] == "settling":
        return None if withdrawn else ticket
    alert_id = alert["alert_id"]
    if not withdrawn and (alert_id in ticket.get("coming", ()) or alert_id not in ticket["alert_ids"]):
        return None if ticket["manual"] else {**ticket, "status": "settling", "next_round": True}
    return ticket


def page_number(text: str | None) -> int:
    """The alert list's page asked for in the address (1 when it is none: `?page=abc`, 0, -3)."""
    try:
        number = int(str(text or "1"))
    except ValueError:
        return 1
    return min(max(number, 1), 10 ** 9)


def pages_of(total: int, size: int) -> int:
    """How many pages of `size` rows a list of `total` rows fills (an empty list is one page)."""
    return max(1, -(-total // size))


def paging_of(number: int, total: int, shown: int, size: int, link: Callable[[int], str]) -> dict[str, Any]:
    """A list's page `number` (of `size` rows, `shown` of them on it) for the pager: where it
    stands and the addresses of the pages before and after (`link`: the same filters, another page)."""
    pages = pages_of(total, size)
    return {"number": number, "pages": pages, "total": total, "first": (number - 1) * size + 1,
            "last": (number - 1) * size + shown, "previous": link(number - 1) if number > 1 else None,
            "next": link(number + 1) if number < pages else None}


@dataclass
class Backend:
    """Where the console reads (a store client, used under a lock in a thread) and how it
    publishes an action; `judge()` is the current catalog and calendar."""
    client: Any
    judge: Callable[[], Any]
    publish: Callable[[list[tuple[bytes, bytes]]], Awaitable[Any]]
    lock: Any = None
    executor: Any = None
    failure: Callable[[], BaseException | None] = lambda: None
    wait_seconds: float = ACTION_WAIT_SECONDS  # how long a page waits for the pipeline to apply an action
    # The topics an action is refused on (the actions topic: unreadable; the ticket ticks: refused
    # by the ticket); None looks in every topic.
    action_topics: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.lock is None:
            self.lock = threading.Lock()

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        def locked():
            with self.lock:
                return fn(self.client, *args)

        return await asyncio.get_running_loop().run_in_executor(self.executor, locked)

    async def wait(self, ticket_id: str, action_id: str, timeout: float | None = None) -> str:
        """'applied', the refusal's reason, or 'pending' when the pipeline has not taken it yet."""
        from sinks.queries import dead_letters, ticket_state

        def look(client):
            state = ticket_state(client, ticket_id) or {}
            if action_id in state.get("actions", ()):
                return "applied"
            letters = list(dead_letters(client, Scope.everything(), payload_containing=action_id,
                                        topics=self.action_topics, limit=1))
            return letters[0]["reason"] if letters else None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.wait_seconds if timeout is None else timeout)
        pause = 0.2
        while True:
            found = await self.read(look)
            if found is not None:
                return found
            if loop.time() >= deadline:
                return "pending"
            await asyncio.sleep(min(pause, max(deadline - loop.time(), 0.0)))
            pause = min(pause * 1.5, 1.0)  # a slow pipeline is asked less often


# -- the application ------------------------------------------------------------------------------------

def _environment() -> jinja2.Environment:
    from streams.notices import notice_reason

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["moment"] = moment
    env.filters["deadline"] = deadline_moment
    env.filters["local_moment"] = lambda value, tz: local_moment(value, ZoneInfo(tz))
    env.filters["case_address"] = lambda value: case_address(str(value))
    env.filters["actor"] = actor_title
    env.filters["rounds"] = rounds
    env.globals.update(RULE_TITLE={r.value: t for r, t in RULE_TITLE.items()},
                       SEVERITY_TITLE={s.value: t for s, t in SEVERITY_TITLE.items()},
                       STATUS_TITLE={s.value: t for s, t in STATUS_TITLE.items()}, KIND_TITLE=KIND_TITLE,
                       ROLE_TITLE=ROLE_TITLE, MAX_TEXT=MAX_TEXT_CHARS, STEP_TITLE=STEP_TITLE,
                       notice_outcome=notice_outcome, notice_reason=notice_reason, RECIPIENT_TITLE=RECIPIENT_TITLE,
                       escalation_title=escalation_title)
    return env


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A reply link's token is in the address: never sent on to another site.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'none'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class SecurityHeaders:
    """Headers on every response (pure ASGI); pages are never cached (they hold CSRF tokens)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Console:
    def __init__(self, settings: Settings, backend: Backend, users: Users, links: Links):
        self.settings = settings
        self.backend = backend
        self.users = users
        self.links = links
        secure = (settings.public_url or "").lower().startswith("https://")
        self.sessions = Sessions(check_secret_key(settings.secret_key), secure=secure)
        self.env = _environment()
        self.name_failures = Throttle(SIGN_IN_FAILURES_PER_NAME, SIGN_IN_WINDOW)
        self.address_failures = Throttle(SIGN_IN_FAILURES_PER_ADDRESS, SIGN_IN_WINDOW, clock=self.name_failures.clock)
        # scrypt on threads of its own: never in the pool that runs the store's reads
        self.hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sunlight-scrypt")

    # -- helpers ---------------------------------------------------------------------------------------

    def page(self, name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        session = getattr(request.state, "session", None)
        user = getattr(request.state, "user", None)
        # A head's department by its name in the catalog (the page header showed its code).
        departments = self.backend.judge().catalog.departments if user is not None and user.department else {}
        user_department = departments[user.department].name if user is not None and user.department in departments \
            else (user.department if user is not None else None)
        html = self.env.get_template(name).render(
            user=user, user_department=user_department, csrf=self.sessions.csrf(session) if session else "", **context)
        return HTMLResponse(html, status_code=status)

    def refuse(self, request: Request, status: int, message: str, draft: dict | None = None,
               sign_in: str | None = None, draft_note: str = DRAFT_LOST, back: str | None = None) -> HTMLResponse:
        """The refusal page; `draft` is a form's text that was not submitted, shown to be copied, with
        `draft_note` (where to submit it again); `sign_in`, the sign-in address that leads back to the page;
        `back`, the page to go back to (a case's), for a signed-in user."""
        return self.page("refused.html", request, status=status, message=message,
                         draft={"actor": None, **draft} if draft else None,
                         draft_note=draft_note if draft else None, sign_in=sign_in,
                         back=back if back and back != "/alerts" else None)

    def signed_in(self, request: Request) -> User | None:
        session = self.sessions.loads(request.cookies.get(COOKIE))
        request.state.session = session
        user = self.users.get(session.user) if session and session.user else None
        if user is not None and not self.sessions.belongs(session, user.name, self.users.credential(user.name)):
            user = None  # the password changed, the user was added again, or the session was signed out
        request.state.user = user
        return user

    def scope_of(self, user: User) -> Scope:
        if user.inspector:
            return Scope.everything()
        return Scope.of([user.department]).resolve(self.backend.judge().catalog)

    async def guarded(self, request: Request) -> tuple[User | None, Response | None]:
        """The signed-in user, or the refusal: to the sign-in page for a GET, 403 otherwise."""
        user = self.signed_in(request)
        if user is None:
            if request.method == "GET":
                return None, RedirectResponse(login_address(path_as_sent(request), request.url.query), status_code=303)
            # The session ended (signed out in another tab, or older than a session lives) while a
            # form was open: what was typed is shown to be copied, with the way back to the case
            # (before, a bare "请先登录" lost a long return reason: found by a black-box test).
            form = await request.form()
            text = form_text(form)
            back = _case_page_of(form)
            return None, self.refuse(request, 403, "登录已失效（已退出登录或超过登录有效期），操作未执行。请重新登录。",
                                     draft={"text": kept_text(text)} if text else None, sign_in=login_address(back),
                                     draft_note=DRAFT_LOST_SIGN_IN)
        if request.method == "POST":
            form = await request.form()
            if not self.sessions.csrf_ok(request.state.session, field(form, "csrf")):
                # A page drawn before signing in again (in another tab): the text typed is kept.
                text = form_text(form)
                return None, self.refuse(request, 403, "表单已失效（缺少或错误的校验码），请返回刷新页面后重试。",
                                         draft={"text": kept_text(text)} if text else None,
                                         back=_case_page_of(form),
                                         draft_note=DRAFT_LOST_SIGNED_IN)
        try:
            request.state.scope = self.scope_of(user)
        except UnknownScope:
            return None, self.refuse(request, 403, f"部门 {user.department} 不在职权目录中，无法确定查看范围。")
        return user, None

    # -- routes ------------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        failure = self.backend.failure()
        if failure is not None:
            return PlainTextResponse(f"failed: {type(failure).__name__}", status_code=503)
        return PlainTextResponse("ok")

    async def metrics(self, request: Request) -> Response:
        if not self.settings.metrics_port:
            return PlainTextResponse("metrics are off (SUNLIGHT_METRICS_PORT=0)", status_code=404)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from streams import metrics

        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, metrics.REGISTRY)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stylesheet(self, request: Request) -> Response:
        return Response((HERE / "static" / "console.css").read_bytes(), media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/alerts", status_code=303)

    async def login_form(self, request: Request) -> Response:
        user = self.signed_in(request)
        if user is not None:
            return RedirectResponse(local_page(request.query_params.get("next")), status_code=303)
        return self._login_page(request, None, 200, request.query_params.get("next"))

    def _login_page(self, request: Request, error: str | None, status: int, next_page: str | None = None) -> Response:
        session = request.state.session or self.sessions.new(None)
        request.state.session = session
        response = self.page("login.html", request, status=status, error=error, next_page=local_page(next_page))
        self.sessions.set_cookie(response, session)
        return response

    async def login(self, request: Request) -> Response:
        self.signed_in(request)
        form = await request.form()
        if not self.sessions.csrf_ok(request.state.session, field(form, "csrf")):
            return self.refuse(request, 403, "登录表单已失效，请刷新页面后重试。")
        name, password = field(form, "name").strip()[:64], field(form, "password")[:256]
        next_page = local_page(field(form, "next"))
        keys = ((self.name_failures, f"name:{name}"),
                (self.address_failures, f"address:{request.client.host if request.client else ''}"))
        until = max((t for t in (throttle.blocked_until(key) for throttle, key in keys) if t is not None), default=None)
        if until is not None:
            return self._too_many(request, until)
        user = await asyncio.get_running_loop().run_in_executor(self.hashing, self.users.authenticate, name, password)
        if user is None:
            for throttle, key in keys:
                throttle.failed(key)
            return self._login_page(request, "用户名或密码错误。", 401, next_page)
        self.name_failures.forget(keys[0][1])
        response = RedirectResponse(next_page, status_code=303)
        session = self.sessions.new(user.name, self.users.credential(user.name))  # a new session: a new nonce
        self.sessions.set_cookie(response, session)
        return response

    def _too_many(self, request: Request, until: float) -> Response:
        tz = self.backend.judge().calendar.tz
        at = datetime.fromtimestamp(until, timezone.utc).astimezone(tz)
        if at.second or at.microsecond:  # said to the minute: the next one (15:40:30 said 15:40, still locked)
            at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        minutes = max(1, -(-int(until - self.name_failures.clock()) // 60))
        message = f"登录失败次数过多，请于 {at:%H:%M} 后（约 {minutes} 分钟后）再试。"
        response = self._login_page(request, message, 429)
        response.headers["Retry-After"] = str(max(1, int(until - self.name_failures.clock()) + 1))
        return response

    async def logout(self, request: Request) -> Response:
        user, refused = await self.guarded(request)
        if refused:
            return refused
        self.sessions.revoke(request.state.session)  # a copy of the cookie is refused too (in this process)
        response = RedirectResponse("/login", status_code=303)
        self.sessions.clear_cookie(response)
        return response

    async def alerts(self, request: Request) -> Response:
        user, refused = await self.guarded(request)
        if refused:
            return refused
        from sinks.queries import alert_page, stored_tickets

        params = request.query_params
        filters = {"rule": params.get("rule") or "", "severity": params.get("severity") or "",
                   "department": params.get("department") or "", "region": params.get("region") or "",
                   "status": params.get("status") or "open", "case": (params.get("case") or "").strip()[:100]}
        judge = self.backend.judge()
        catalog, tz = judge.catalog, judge.calendar.tz  # times as the catalog's
        scope = request.state.scope
        note = None
        if not user.inspector:  # a head's view is their department's, whatever the address says
            filters["department"] = filters["region"] = ""
        # Both chosen, the department's alerts in the region: filters narrow, where a scope's parts
        # add up (both showed every alert of either: found by a black-box test).
        department = filters["department"] if filters["department"] and filters["region"] else ""
        if filters["department"] or filters["region"]:
            try:  # as `alerts export --department/--region`: checked against the catalog
                scope = Scope.of([filters["department"]] if filters["department"] else [],
                                 [filters["region"]] if filters["region"] else []).resolve(catalog)
                if department:
                    scope = Scope.of([], [filters["region"]]).resolve(catalog)
            except UnknownScope:
                note = "所选部门或地区不在职权目录中。"
                scope = None
        unknown = [title for title, value, known in (
            ("规则", filters["rule"], {r.value for r in Rule}), ("预警级别", filters["severity"], {s.value for s in Severity}),
            ("状态", filters["status"], {"open", "withdrawn", "all"})) if value and value not in known]
        if unknown:  # a typed or stale address: said, not shown as an empty list
            note = f"筛选条件无效（{'、'.join(unknown)}），请重新选择。"
            scope = None

        asked = page_number(params.get("page"))

        def read(client):  # filtered, ordered and cut in the SQL: a page's worth, and its tickets
            if scope is None:
                return [], 0, 1, {}

            def page_of(number: int):
                return alert_page(client, scope, rule=filters["rule"], severity=filters["severity"],
                                  status=filters["status"], department=department, case_contains=filters["case"],
                                  limit=MAX_ALERTS_SHOWN, offset=(number - 1) * MAX_ALERTS_SHOWN, tz=tz)

            number = asked
            found, total = page_of(number)
            if not found and number > 1:  # past the last page (the list shrank, or a number typed in): the last
                number = pages_of(total, MAX_ALERTS_SHOWN)
                if total:
                    found, total = page_of(number)
            names = sorted({f"{a['case_id']}/{a['rule']}" for a in found})
            tickets = ({t["ticket_id"]: t for t in stored_tickets(client, request.state.scope, ticket_ids=names,
                                                                  settling=True, tz=tz)} if names else {})
            return found, total, number, tickets

        found, total, number, tickets = await self.backend.read(read)
        rows = [{**alert, "text": alert_text(alert), "ticket": ticket_of(alert, tickets)} for alert in found]
        departments = sorted(catalog.departments.values(), key=lambda d: d.code)
        regions = sorted({d.region for d in departments if d.region})

        def link(to: int) -> str:  # the same filters, another page
            chosen = {name: value for name, value in filters.items() if value and (name, value) != ("status", "open")}
            return "/alerts?" + urlencode({**chosen, **({"page": to} if to > 1 else {})})

        paging = paging_of(number, total, len(rows), MAX_ALERTS_SHOWN, link)
        return self.page("alerts.html", request, rows=rows, total=total, filters=filters, paging=paging,
                         departments=departments, regions=regions, region_names=region_names(self.settings),
                         rules=[r.value for r in Rule],
                         severities=[s.value for s in Severity], note=note,
                         department_names={d.code: d.name for d in departments})

    async def tickets(self, request: Request) -> Response:
        user, refused = await self.guarded(request)
        if refused:
            return refused
        from sinks.queries import pending_tickets, ticket_page

        params = request.query_params
        status = params.get("status") or ""
        department = (params.get("department") or "") if user.inspector else ""  # a head's are their own
        overdue = params.get("overdue") == "1"
        note = None
        if status and (status not in STATUS_TITLE or status == "settling"):
            note = "筛选条件无效（状态），已显示全部督办件。"
            status = ""
        judge = self.backend.judge()
        catalog, tz = judge.catalog, judge.calendar.tz  # times as the catalog's
        scope = request.state.scope
        pending_scope = scope
        if department:
            try:
                scope = Scope.of([department]).resolve(catalog)
            except UnknownScope:
                note, scope = "所选部门不在职权目录中。", None
        asked = page_number(params.get("page"))

        def read(client):  # filtered, ordered and cut in the SQL: a page's worth
            pending = pending_tickets(client, pending_scope)
            if scope is None:
                return [], 0, 1, pending
            number = asked
            found, total = ticket_page(client, scope, status=status, overdue=overdue, limit=MAX_TICKETS_SHOWN,
                                       offset=(number - 1) * MAX_TICKETS_SHOWN, tz=tz)
            if not found and number > 1 and total:  # past the last page: the last
                number = pages_of(total, MAX_TICKETS_SHOWN)
                found, total = ticket_page(client, scope, status=status, overdue=overdue, limit=MAX_TICKETS_SHOWN,
                                           offset=(number - 1) * MAX_TICKETS_SHOWN, tz=tz)
            return found, total, number, pending

        found, total, number, pending = await self.backend.read(read)
        chosen = {"status": status, "department": department, "overdue": "1" if overdue else ""}

        def link(to: int) -> str:  # the same filters, another page
            return "/tickets?" + urlencode({**{k: v for k, v in chosen.items() if v}, **({"page": to} if to > 1 else {})})

        paging = paging_of(number, total, len(found), MAX_TICKETS_SHOWN, link)
        departments = sorted(catalog.departments.values(), key=lambda d: d.code)
        return self.page("tickets.html", request, tickets=found, chosen=status, filters=chosen, pending=pending,
                         note=note, paging=paging, departments=departments,
                         department_names={d.code: d.name for d in catalog.departments.values()})

    async def refused_events(self, request: Request) -> Response:
        """被拒收的事件: what a department must correct in its source system, and why its cases wait
        (each case's page says so for that case only; before, only operators could list them)."""
        user, refused = await self.guarded(request)
        if refused:
            return refused
        from alerts.letters import REASON_TITLE
        from sinks.queries import refused_events_page

        scope, tz = request.state.scope, self.backend.judge().calendar.tz
        asked = page_number(request.query_params.get("page"))

        def read(client):
            number = asked
            found, total = refused_events_page(client, scope, MAX_LETTERS_SHOWN, (number - 1) * MAX_LETTERS_SHOWN,
                                               tz=tz)
            if not found and number > 1 and total:  # past the last page: the last
                number = pages_of(total, MAX_LETTERS_SHOWN)
                found, total = refused_events_page(client, scope, MAX_LETTERS_SHOWN,
                                                   (number - 1) * MAX_LETTERS_SHOWN, tz=tz)
            return found, total, number

        found, total, number = await self.backend.read(read)
        paging = paging_of(number, total, len(found), MAX_LETTERS_SHOWN,
                           lambda to: "/letters" + (f"?page={to}" if to > 1 else ""))
        catalog = self.backend.judge().catalog
        return self.page("letters.html", request, letters=found, paging=paging, REASON_TITLE=REASON_TITLE,
                         department_names={d.code: d.name for d in catalog.departments.values()})

    async def case(self, request: Request) -> Response:
        user, refused = await self.guarded(request)
        if refused:
            return refused
        case_id = request.path_params.get("case_id", request.query_params.get("id", ""))  # `case_address`
        return await self._case_page(request, user, case_id, await self._result_asked(request, f"case:{case_id}"))

    async def _case_page(self, request: Request, user: User, case_id: str, result: str,
                         draft: dict | None = None, status: int = 200) -> Response:
        """A case's page; `draft` is an action's text the pipeline refused (its `ticket_id` and
        `kind`, or the `alert_id` a ticket was to be opened from), put back into its form."""
        from alerts.casefile import case_file, shown_part
        from alerts.evaluate import department_of
        from alerts.events import case_item_code, parse_event
        from sinks.queries import (alerts_of_case, case_events_of, dead_letters, refused_case_events, stored_notices,
                                   stored_tickets, ticket_history, whole_case_events)

        scope = request.state.scope
        judge = self.backend.judge()

        def read(client):
            events = case_events_of(client, scope, case_id)
            if not events:  # known only by refused events, if at all: their letters (`case_refused.html`)
                return list(dead_letters(client, scope, case_id=case_id, tz=judge.calendar.tz)) or None
            # The whole case, when the scope holds part of it (another department registered some of
            # its events): its status and deadline are the whole case's (`alerts.casefile.case_file`).
            every_event = whole_case_events(client, scope, case_id, events)
            alerts = alerts_of_case(client, scope, case_id, tz=judge.calendar.tz)
            every = stored_tickets(client, scope, tz=judge.calendar.tz, case_id=case_id, settling=True)
            tickets = [t for t in every if t["version"] > 0]  # a settling one is nobody's to see yet
            by_id = {t["ticket_id"]: t for t in every}
            histories = {t["ticket_id"]: ticket_history(client, scope, t["ticket_id"], tz=judge.calendar.tz)
                         for t in tickets}
            notices = {t["ticket_id"]: stored_notices(client, scope, t["ticket_id"], tz=judge.calendar.tz)
                       for t in tickets}
            waiting = refused_case_events(client, [case_id], as_kept=True).get(case_id, {})
            conflicting = [letter["event_id"] for letter in dead_letters(
                client, scope, reason="conflicting_duplicate", case_id=case_id)]
            return every_event, events, alerts, tickets, by_id, histories, notices, waiting, conflicting

        found = await self.backend.read(read)
        if found is None:
            return self.refuse(request, 404, "办件不存在，或不在您的查看范围内。")
        if isinstance(found, list):  # no event stored, only refused ones: it waits for them (a 404 before)
            from alerts.letters import REASON_TITLE
            return self.page("case_refused.html", request, case_id=case_id, letters=found,
                             REASON_TITLE=REASON_TITLE)
        every_event, events, alerts, tickets, by_id, histories, notices, waiting, conflicting = found
        parsed = [parse_event(e) for e in every_event]
        item_code = case_item_code(parsed)  # the item it is judged under (`alerts.evaluate.judge_case`)
        item = judge.catalog.item(item_code)
        if item is None:
            return self.refuse(request, 404, f"办件的事项 {item_code} 不在职权目录中。")
        its = department_of(parsed, item)
        department = judge.catalog.departments.get(its)
        file = case_file(parsed, alerts, item, judge.calendar, department.name if department else None, waiting,
                         conflicting, **shown_part(parsed, {e["event_id"] for e in events}, scope.holds(its)))
        for alert in file["alerts"]:
            alert["ticket"] = ticket_of(alert, by_id)
            stored = by_id.get(f"{case_id}/{alert['rule']}")
            alert["can_open"] = (user.inspector and alert["status"] != "withdrawn"
                                 and (stored is None or stored["status"] in ("settling", "closed", "withdrawn")))
        for ticket in tickets:
            ticket["history"] = histories.get(ticket["ticket_id"], [])
            # The notices under the round each was sent in (they were one list after the last round's
            # history: a second round read as escalated by the first's notices).
            ticket["rounds"] = rounds_with_notices(ticket["history"], notices.get(ticket["ticket_id"], []))
            ticket["evidence_text"] = [(a["status"], describe_evidence(ticket["rule"], a["evidence"]))
                                       for a in ticket["evidence"].values()]
            ticket["actions"] = self._actions_for(user, ticket)
        if draft is not None:  # whether the page still has the form the text was typed into
            draft["placed"] = (any(a["alert_id"] == draft["alert_id"] and a["can_open"] for a in file["alerts"])
                               if draft["kind"] == "open" else
                               any(t["ticket_id"] == draft["ticket_id"] and draft["kind"] in t["actions"]
                                   for t in tickets))
        return self.page("case.html", request, status=status, file=file, tickets=tickets,
                         result=result_text(result), result_ok=result in SETTLED_RESULTS, draft=draft,
                         draft_note=DRAFT_TO_FIX if result in TO_FIX else DRAFT_KEPT,
                         new_action_id=lambda: uuid.uuid4().hex)

    @staticmethod
    def _actions_for(user: User, ticket: dict) -> list[str]:
        status = ticket["status"]
        if user.inspector:
            out = []
            if status == "replied":
                out += ["accept", "return"]
            if status in ("open", "replied", "returned"):
                out.append("close")
            return out
        return ["reply"] if status in ACTIVE and ticket["department"] == user.department else []

    async def act(self, request: Request) -> Response:
        user, refused = await self.guarded(request)
        if refused:
            return refused
        from sinks.queries import export_alerts, stored_tickets

        form = await request.form()
        kind = field(form, "kind")
        allowed = INSPECTOR_KINDS if user.inspector else ("reply",)
        if kind not in allowed:
            return self.refuse(request, 403, "您的角色不能执行此操作。")
        text = form_text(form)
        action_id = field(form, "action_id")
        if not ACTION_ID.match(action_id):
            return self.refuse(request, 400, "表单不完整，请返回刷新页面后重试。")
        scope = request.state.scope
        kept = {"text": kept_text(text)} if text else None
        if kind == "open":
            case_id, alert_id = field(form, "case_id"), field(form, "alert_id")
            alerts = await self.backend.read(lambda c: list(export_alerts(c, scope, case_id=case_id)))
            alert = next((a for a in alerts if a["alert_id"] == alert_id), None)
            ticket_id = make_ticket_id(alert["case_id"], Rule(alert["rule"])) if alert is not None else ""
            version = None
        else:
            ticket_id = field(form, "ticket_id")
            found = await self.backend.read(lambda c: stored_tickets(c, scope, ticket_id=ticket_id))
            if not found:
                return self.refuse(request, 404, "督办件不存在，或不在您的查看范围内。", draft=kept,
                                   draft_note=DRAFT_LOST_SIGNED_IN)
            case_id = found[0]["case_id"]
            version = form_version(form)
            if version is None:
                return self.refuse(request, 400, "表单不完整，请返回刷新页面后重试。", draft=kept,
                                   draft_note=DRAFT_LOST_SIGNED_IN)
        draft = {"kind": kind, "text": kept_text(text), "ticket_id": ticket_id,
                 "alert_id": field(form, "alert_id") if kind == "open" else None}
        # Refused before it is sent: the case page again, its form holding what was typed, with what
        # to change (before, a page titled 无法访问 with no form: found by a black-box test). An alert
        # withdrawn since the page was drawn leaves the text to be copied, on the case's page.
        refused_as = ("unknown_alert" if kind == "open" and not ticket_id else
                      "text_too_long" if len(text) > MAX_TEXT_CHARS else
                      EMPTY_TEXT[kind] if kind in TEXT_NEEDED and not text else None)
        if refused_as is not None:
            return await self._case_page(request, user, case_id, refused_as, draft=draft,
                                         status=404 if refused_as == "unknown_alert" else 400)
        department = INSPECTORS if user.inspector else user.department
        # A head answers for the department, as a reply link does: its name, theirs in brackets (the
        # history read "scjghead · 部门答复", and an inspector could not tell which department answered:
        # found by a black-box test).
        named = self.backend.judge().catalog.departments.get(department) if not user.inspector else None
        actor = f"{named.name}（{user.name}）" if named is not None else user.name
        action = Action(action_id, ticket_id, version, actor, department, ActionKind(kind), text,
                        wall_now(), alert_id if kind == "open" else None)
        result = await self._publish(ticket_id, action)
        if kind == "open" and result == "not_allowed":  # only an open ticket refuses an opening: said so
            result = "already_open"  # (found by a black-box test: two inspectors, one ticket)
        if result not in SETTLED_RESULTS and text:
            # Refused (most often: the ticket changed since the page was drawn): the page again, as it
            # is now, with the text in its form, so that nothing typed is lost.
            return await self._case_page(request, user, case_id, result, draft=draft, status=409)
        rule = ticket_id.rpartition("/")[2]
        said = self._result_said(f"case:{case_id}", result, ticket_id, action_id, posted_as(action))
        return RedirectResponse(f"{case_address(case_id, said)}#t-{rule}", status_code=303)

    def _result_said(self, page: str, result: str, ticket_id: str, action_id: str, posted: str = "") -> str:
        """The query that shows an action's result on the page it returns to, signed with the action
        it is the result of: a result typed into an address (`?result=applied` on a ticket nobody
        answered) shows nothing, and one kept in the history says what came of that action (before,
        every applied action of a case had the same address, and a "pending" one said 已提交 for good,
        whatever came of it: found by a black-box test). `posted`: what this post said
        (`posted_as`), for a pending one applied later as an earlier post of the form said it."""
        extra = {"posted": posted} if posted and result == "pending" else {}
        return urlencode({"result": result, "ticket": ticket_id, "action": action_id, **extra,
                          "sig": self._result_signature(page, result, ticket_id, action_id, extra.get("posted", ""))})

    async def _result_asked(self, request: Request, page: str) -> str:
        """The result an address shows, if signed: a pending one as it stands now."""
        query = request.query_params
        result, ticket_id, action_id = query.get("result") or "", query.get("ticket") or "", query.get("action") or ""
        posted, signature = query.get("posted") or "", query.get("sig") or ""
        if not result or not hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), self._result_signature(
                page, result, ticket_id, action_id, posted).encode()):
            return ""
        if result == "pending":
            now = await self.backend.wait(ticket_id, action_id, timeout=0)
            if now == "applied" and posted and await self._applied_otherwise(ticket_id, action_id, posted):
                return "applied_earlier"  # (it read 已办理 when the first post was still on its way: review)
            return now
        return result

    def _result_signature(self, page: str, result: str, ticket_id: str, action_id: str, posted: str = "") -> str:
        said = f"result:{page}:{result}:{ticket_id}:{action_id}" + (f":{posted}" if posted else "")
        return hmac.new(self.links.secret_key.encode(), said.encode("utf-8", "surrogatepass"),
                        "sha256").hexdigest()[:32]

    async def _applied_otherwise(self, ticket_id: str, action_id: str, posted: str) -> bool:
        """Whether the change the applied action made says other than `posted` (`posted_as`): the
        same form sent again, another text in it, applied as first sent."""
        from sinks.queries import change_of_action

        made = await self.backend.read(change_of_action, ticket_id, action_id)
        return made is not None and _digest(made["actor"], made["text"]) != posted

    async def _publish(self, ticket_id: str, action: Action) -> str:
        await self.backend.publish([(ticket_id.encode(), ticket_action(action))])
        log.info("console: %s on %s by %s (action %s)", action.kind.value, ticket_id, action.actor, action.action_id)
        result = await self.backend.wait(ticket_id, action.action_id)
        if result == "applied" and await self._applied_otherwise(ticket_id, action.action_id, posted_as(action)):
            return "applied_earlier"  # as an earlier post of the same form
        return result

    # -- reply links ---------------------------------------------------------------------------------------

    @staticmethod
    def _draft(form) -> dict | None:
        """A reply form's text and name, to keep on a refusal page (none when it holds no text)."""
        text = form_text(form)
        return {"text": kept_text(text), "actor": actor_named(form)} if text else None

    async def _grant(self, request: Request, draft: dict | None = None):
        """The ticket a link allows, or the refusal page (with `draft`, a reply's text not submitted)."""
        from sinks.queries import stored_tickets, ticket_history

        request.state.session = None
        request.state.user = None
        token = request.path_params["token"]
        try:
            grant = self.links.read(token)
        except LinkRefused as refused:
            return None, self.refuse(request, 410 if refused.reason == "expired" else 403, LINK_REFUSAL[refused.reason],
                                     draft)
        tz = self.backend.judge().calendar.tz

        def read(client):
            found = stored_tickets(client, Scope.everything(), ticket_id=grant.ticket_id, tz=tz)
            return found, ticket_history(client, Scope.everything(), grant.ticket_id, tz=tz) if found else []

        found, history = await self.backend.read(read)
        if not found:
            return None, self.refuse(request, 404, LINK_REFUSAL["missing"], draft)
        ticket = found[0]
        if ticket["department"] != grant.department:  # a link answers its own department's ticket only
            return None, self.refuse(request, 403, LINK_REFUSAL["other_ticket"], draft)
        if any(h["kind"] in OPENINGS and h["version"] > grant.version for h in history):
            # closed (or withdrawn) and opened again since the link was made: the new round has its own link
            return None, self.refuse(request, 410, LINK_REFUSAL["superseded"], draft)
        return (token, grant, ticket, history), None

    async def reply_form(self, request: Request) -> Response:
        granted, refused = await self._grant(request)
        if refused:
            return refused
        return self._reply_page(request, granted, await self._result_asked(request, f"reply:{granted[0]}"))

    def _reply_page(self, request: Request, granted, result: str, draft: dict | None = None,
                    status: int = 200) -> Response:
        """The reply page; `draft` is a reply the pipeline refused (`text`, `actor`), put back into its form."""
        token, grant, ticket, history = granted
        catalog = self.backend.judge().catalog
        department = catalog.departments.get(ticket["department"])
        item = catalog.item(ticket["item_code"])
        evidence = [describe_evidence(ticket["rule"], a["evidence"]) for a in ticket["evidence"].values()
                    if a["status"] != "withdrawn"]
        return self.page("reply.html", request, status=status, ticket=ticket, history=history, evidence=evidence,
                         department_name=department.name if department else ticket["department"],
                         item_name=item.name if item else ticket["item_code"], token=token,
                         link_csrf=self.links.csrf(token), expires_at=grant.expires_at.astimezone(
                             self.backend.judge().calendar.tz).isoformat(),
                         action_id=uuid.uuid4().hex, can_reply=ticket["status"] in ACTIVE,
                         result=result_text(result), result_ok=result in SETTLED_RESULTS, draft=draft,
                         draft_note=DRAFT_TO_FIX if result in TO_FIX else DRAFT_KEPT)

    async def reply(self, request: Request) -> Response:
        form = await request.form()
        granted, refused = await self._grant(request, self._draft(form))
        if refused:
            return refused
        token, grant, ticket, _ = granted
        draft = self._draft(form)
        if not field(form, "csrf") or not hmac.compare_digest(field(form, "csrf").encode("utf-8", "surrogatepass"),
                                                           self.links.csrf(token).encode()):
            return self.refuse(request, 403, "表单已失效（缺少或错误的校验码），请重新打开答复链接后重试。", draft)
        text = form_text(form)
        action_id = field(form, "action_id")
        if not ACTION_ID.match(action_id):
            return self.refuse(request, 400, "表单不完整，请重新打开答复链接后重试。", draft)
        if not text or len(text) > MAX_TEXT_CHARS:
            # The reply page again, its form holding what was typed (the name too, when the text was
            # blank: the next reply went without it, found by a black-box test), with what to change.
            named = draft or {"text": "", "actor": actor_named(form)}
            return self._reply_page(request, granted, "text_too_long" if text else "empty_reply",
                                    draft=named, status=400)
        version = form_version(form)
        if version is None:
            return self.refuse(request, 400, "表单不完整，请重新打开答复链接后重试。", draft)
        catalog = self.backend.judge().catalog
        department = catalog.departments.get(grant.department)
        # The department answers: its name is the actor, whoever holds the link; the name they give is a note.
        who = actor_named(form)
        name = department.name if department else grant.department
        actor = f"{name}（{who}）" if who else name
        action = Action(action_id, ticket["ticket_id"], version, actor, grant.department, ActionKind.REPLY, text,
                        wall_now())
        result = await self._publish(ticket["ticket_id"], action)
        if result not in SETTLED_RESULTS:
            # Refused (most often: the ticket was escalated or changed while the reply was written):
            # the page again, as the ticket is now, with the reply in its form.
            granted, refused = await self._grant(request, {"text": text, "actor": who})
            if refused:
                return refused
            return self._reply_page(request, granted, result, draft={"text": text, "actor": who}, status=409)
        said = self._result_said(f"reply:{token}", result, ticket["ticket_id"], action.action_id, posted_as(action))
        return RedirectResponse(f"/reply/{token}?{said}", status_code=303)

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz), Route("/metrics", self.metrics),
            Route("/static/console.css", self.stylesheet),
            Route("/", self.home), Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]), Route("/logout", self.logout, methods=["POST"]),
            Route("/alerts", self.alerts), Route("/tickets", self.tickets),
            Route("/cases/{case_id:path}", self.case), Route("/case", self.case),
            Route("/letters", self.refused_events),
            Route("/act", self.act, methods=["POST"]),
            Route("/reply/{token}", self.reply_form, methods=["GET"]),
            Route("/reply/{token}", self.reply, methods=["POST"]),
        ]


def posted_as(action: Action) -> str:
    """What an action's post says, as the change it makes records it (an opening without a note is
    `HAND_OPENED`), in short: to tell it from another post of the same form."""
    return _digest(action.actor, action.text or (HAND_OPENED if action.kind is ActionKind.OPEN else ""))


def _digest(actor: str, text: str) -> str:
    return hashlib.sha256(f"{actor}\x1f{text}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def local_page(address: str | None) -> str:
    """Where to go after signing in: a page of the console (a path, never another site: `//host`
    or a scheme would take the person elsewhere), else the alert list."""
    if not address or not address.startswith("/") or address.startswith("//") or "\\" in address \
            or address.startswith("/login"):
        return "/alerts"
    return address


def case_address(case_id: str, query: str = "") -> str:
    """A case's page. A case id that is `.` or `..` is a dot segment in a path, which the browser
    removes (`/cases/..` opened the console's home): such a case is addressed by its query instead."""
    if case_id in (".", ".."):
        return f"/case?{urlencode({'id': case_id})}" + (f"&{query}" if query else "")
    return f"/cases/{quote(case_id, safe='')}" + (f"?{query}" if query else "")


def path_as_sent(request: Request) -> str:
    """The path as the browser sent it, still percent-encoded: decoded, a case id holding `%2F` or
    `%25` came back after signing in as another (`C%2F25` as `C/25`: found by a black-box test)."""
    raw = request.scope.get("raw_path")
    return raw.decode("ascii") if raw and raw.isascii() else quote(request.url.path)


def login_address(path: str, query: str = "") -> str:
    """The sign-in page, leading back to `path` (with its query) once signed in."""
    page = local_page(f"{path}?{query}" if query else path)
    return "/login" if page == "/alerts" else f"/login?{urlencode({'next': page})}"


def _case_page_of(form) -> str:
    """The case page a form was sent from: its case, or its ticket's (`alerts.tickets.ticket_id`:
    case/rule). For the way back only, never to act: a form of a ticket's action carries no case id,
    and its sign-in link led to the alert list (found by a black-box test)."""
    case_id = field(form, "case_id")
    if not case_id:
        try:
            case_id = case_of(field(form, "ticket_id"))
        except ActionRefused:  # no ticket id
            case_id = ""
    return case_address(case_id) if case_id else "/alerts"


def form_text(form) -> str:
    """A form's text as the person typed it: a browser sends each line break of a textarea as CRLF
    and counts it as one character against `maxlength` (a 2,000-character answer with line breaks
    was refused as too long)."""
    return field(form, "text").replace("\r\n", "\n").strip()


def create_app(settings: Settings, backend: Backend, users: Users | None = None,
               links: Links | None = None) -> Starlette:
    key = check_secret_key(settings.secret_key)
    users = users or Users(users_path(settings))
    links = links or Links(settings.public_url or "", key, settings.reply_link_days)
    console = Console(settings, backend, users, links)
    async def not_found(request: Request, exc: Exception) -> Response:
        # Signed in, the page keeps the header and a way back (it had neither: found by a black-box test).
        try:
            console.signed_in(request)
        except Exception:  # (the refusal is shown whatever the cookie holds)
            request.state.session = request.state.user = None
        return console.refuse(request, 404, "页面不存在。")

    async def failed(request: Request, exc: Exception) -> Response:
        log.error("console: %s %s failed: %r", request.method, request.url.path, exc)
        request.state.session = request.state.user = None
        return console.refuse(request, 500, "系统内部错误，请稍后重试；如仍不能办理，请联系系统管理员。")

    async def bad_request(request: Request, exc: Exception) -> Response:
        # Starlette's own refusal of a form it cannot read (a part over 1 MB, too many fields).
        return console.refuse(request, 400, "表单过大或格式不正确（每项不超过 1 MB），请缩短内容后重试。")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        request.state.session = request.state.user = None
        return console.refuse(request, 405, "不支持此操作方式，请通过页面上的链接和按钮操作。")

    app = Starlette(routes=console.routes(), middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={400: bad_request, 404: not_found, 405: not_allowed, 500: failed})
    app.state.console = console
    return app


def users_path(settings: Settings) -> Path:
    return Path(settings.users_file) if settings.users_file else Path(settings.data_dir) / "users.json"


# -- sunlight serve -----------------------------------------------------------------------------------

async def reload_off_the_loop(source) -> None:
    """The catalog's reload (a stat, and YAML parsed when it changed) on a thread, not the event loop."""
    await asyncio.get_running_loop().run_in_executor(None, source.maybe_reload)


def _server(app, host: str, port: int):
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self):  # the pipeline (or `serve`) handles SIGINT and SIGTERM
            yield

    return Server(uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning",
                                 access_log=False, server_header=False))


async def serve(settings: Settings, catalog_path: Path, host: str = "0.0.0.0", clock=None) -> int:
    """Run the console until SIGINT/SIGTERM (or the pipeline fails): 0, or 1 on a failure."""
    import signal
    from functools import partial

    from streams.runtime import produce

    key = check_secret_key(settings.secret_key)
    if settings.kafka and settings.embedded_store:
        from streams.console.auth import ConsoleConfigError

        raise ConsoleConfigError("with SUNLIGHT_KAFKA the console reads the store the workers write: set "
                                 "SUNLIGHT_CLICKHOUSE too (the embedded store belongs to one process)")
    users = Users(users_path(settings))
    warning = loose_mode(users.path)
    if warning:
        log.warning("%s", warning)
    if not users.records():
        log.warning("no console users yet in %s: add one with `sunlight users add NAME --role inspector`",
                    users.path)
    links = Links(settings.public_url or "", key, settings.reply_link_days)
    if not settings.public_url:
        log.warning("SUNLIGHT_PUBLIC_URL is not set: notices carry no reply link")
    from streams.notices import channel_missing

    missing = channel_missing(settings) if settings.kafka is None and settings.notify else None
    if missing:  # this process sends them
        log.warning("%s", missing)
    publish_to = settings.ticket_actions_topic
    action_topics = (settings.ticket_actions_topic, settings.ticket_ticks_topic)
    loop = asyncio.get_running_loop()
    if settings.kafka is None:
        from streams.runtime import running_pipeline

        async with running_pipeline(settings, catalog_path, clock=clock) as running:
            pipeline = running.pipeline  # its notices carry the reply link (streams.runtime)
            backend = Backend(running.client, lambda: pipeline.catalog_source.judge, partial(produce, running.bootstrap,
                              publish_to), lock=pipeline.writer.lock, executor=pipeline.writer.executor,
                              failure=lambda: pipeline.failure, action_topics=action_topics)
            server = _server(create_app(settings, backend, users, links), host, settings.http_port)
            log.warning("console on http://%s:%d (pipeline in this process); Ctrl-C to stop", host,
                        settings.http_port)
            waiters = [asyncio.ensure_future(server.serve()),
                       asyncio.ensure_future(running.worker.wait_until_stopped()),
                       asyncio.ensure_future(pipeline.failed.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            await asyncio.gather(waiters[0], return_exceptions=True)
            for waiter in waiters[1:]:
                waiter.cancel()
            if pipeline.failure is not None:
                print(f"sunlight: the console stops: {pipeline.failure}", flush=True)
                return 1
        return 0
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from streams.catalog_source import CatalogSource

    source = CatalogSource(catalog_path, settings.calendar_overrides, settings.tickets_policy,
                           settings.notice_templates, settings.rulebook)
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        migrate(client)
        backend = Backend(client, lambda: source.judge, partial(produce, settings.kafka, publish_to),
                          action_topics=action_topics)
        server = _server(create_app(settings, backend, users, links), host, settings.http_port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def reload_catalog():
            while True:
                await asyncio.sleep(settings.catalog_reload_interval)
                await reload_off_the_loop(source)

        log.warning("console on http://%s:%d (reading %s, actions to %s); Ctrl-C to stop", host,
                    settings.http_port, "the ClickHouse server", publish_to)
        waiters = [asyncio.ensure_future(server.serve()), asyncio.ensure_future(stop.wait()),
                   asyncio.ensure_future(reload_catalog())]
        await asyncio.wait(waiters[:2], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await asyncio.gather(waiters[0], return_exceptions=True)
        for waiter in waiters[1:]:
            waiter.cancel()
    finally:
        client.close()
    return 0
