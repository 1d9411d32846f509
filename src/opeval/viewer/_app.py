"""The Litestar application: pages, the JSON API (OpenAPI at ``/schema``), live updates.

Read-only by construction: every route is a GET, the event log is opened read-only,
but for two forms: a locked viewer's login, and a person's decision on a command the
approval gate holds, which is taken only from this machine (loopback) and only with the
token this viewer process made for its pages (a forged cross-site form cannot know it).
Pages carry a strict Content-Security-Policy (scripts and styles from this origin only),
so even text that slipped past escaping could not run.
"""

from __future__ import annotations

import hmac
import secrets
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import MutableScopeHeaders, State
from litestar.datastructures import Cookie
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import Body, FromPath, FromQuery, HeaderParameter, PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router
from litestar.types import Message, Scope

import opeval
from opeval.errors import NotFoundError, OpevalError, StoreError, UsageError
from opeval.events import DECISIONS
from opeval.export import FORMATS as EXPORTS
from opeval.store import StoreLocation, resolve_store_path
from opeval.viewer._charts import outcome_bar, outcome_legend
from opeval.viewer._lock import COOKIE, TokenLock, session_value
from opeval.viewer._data import FILTERS, SORTABLE, StoreView, WrongKindError, default_rules
from opeval.viewer._models import (
    CampaignComparison,
    CampaignDetail,
    CampaignItem,
    RuleSetInfo,
    TrialDetail,
)
from opeval.viewer._pages import Pages, campaign_charts, summary_rows, trial_charts, trial_rows, viewer_dir

log = logging.getLogger("opeval.viewer")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# The exported postmortem is a standalone page with its own inline stylesheet; no scripts.
EXPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"

Query = FromQuery[str | None]
_ID = r"^[0-9a-fA-F-]{1,36}$"
_TEXT = r"^[\x21-\x7e]{1,200}$"  # a printable, non-blank name: rule sets, filters
RulesParam = Annotated[str | None, QueryParameter(description="Rule set: name@hash, hash prefix or name (default: "
                                                              "the shipped default rule set).", pattern=_TEXT)]
FilterParam = Annotated[str | None, QueryParameter(description="Only campaigns with trials of this value.",
                                                   pattern=_TEXT)]
CampaignId = Annotated[str, PathParameter(description="Campaign id or a unique prefix of it.", pattern=_ID)]
TrialId = Annotated[str, PathParameter(description="Trial id or a unique prefix of it.", pattern=_ID)]
# Pages take any text as an id and answer a helpful 404 page for what is not one.
PageCampaignId = Annotated[str, PathParameter(description="Campaign id or a unique prefix of it.")]
PageTrialId = Annotated[str, PathParameter(description="Trial id or a unique prefix of it.")]
CampaignRef = Annotated[str, QueryParameter(description="Campaign id or a unique prefix of it.", pattern=_ID)]
#: The highest event version the API takes (a trial has thousands; kept exact in JSON Schema's numbers).
MAX_VERSION = 2**31 - 1


SortColumn = Literal[SORTABLE]  # type: ignore[valid-type]


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error answer of the API: the status, what went wrong and what to do, and
    (for an id of the other kind) where to look instead."""

    status_code: int
    detail: str
    see: str | None = None


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    what = {400: "A parameter out of its documented range or form.",
            404: "No campaign, trial or rule set matches (or an id of the other kind: see `see`).",
            503: "The read models are busy (another opeval process holds them) or unreadable: try again."}
    return {c: ResponseSpec(ErrorBody, description=what[c], generate_examples=False) for c in codes}


def _view(state: State) -> StoreView:
    return state.view  # type: ignore[no-any-return]


def _render(state: State, name: str, **context: Any) -> Response[str]:
    pages: Pages = state.pages
    return _html(pages.render(name, **context))


def _html(text: str, status: int = 200) -> Response[str]:
    return Response(text, media_type=MediaType.HTML, status_code=status)


# --- pages --------------------------------------------------------------------------------------
@get("/", include_in_schema=False, sync_to_thread=True)
def campaigns_page(state: State, subject: Query = None, chaos: Query = None, agent: Query = None,
                   variant: Query = None) -> Response[str]:
    """The campaigns, newest first, filtered by subject, chaos, agent and variant."""
    filters = {"subject": subject, "chaos": chaos, "agent": agent, "variant": variant}
    items, options = _view(state).campaigns(filters)
    bars = {c.campaign_id: outcome_bar(msgspec.structs.asdict(c.outcomes)) for c in items}
    return _render(state, "campaigns.html", campaigns=items, options=options, filters=filters, bars=bars,
                   filter_names=FILTERS, outcome_key=outcome_legend())


@get("/campaigns/{campaign_id:str}", include_in_schema=False, sync_to_thread=True)
def campaign_page(state: State, campaign_id: PageCampaignId, rules: RulesParam = None, sort: Query = None,
                  order: Query = None) -> Response[str]:
    """One campaign: scores, aggregates, charts, the baseline comparison."""
    view = _view(state)
    with view.burst():
        detail = view.campaign(campaign_id, rules, sort, order == "desc")
        rule_sets = view.rule_sets()
    return _render(state, "campaign.html", c=detail, charts=campaign_charts(detail), rows=trial_rows(detail.trials),
                   groups=summary_rows(detail.summary), rule_sets=rule_sets, sort=sort, order=order,
                   sortable=SORTABLE, rules=rules)


@get("/trials/{trial_id:str}", include_in_schema=False, sync_to_thread=True)
def trial_page(request: Request[Any, Any, Any], state: State, trial_id: PageTrialId,
               rules: RulesParam = None) -> Response[str]:
    """One trial: timeline, members, workload, the agent's steps, data safety, exports."""
    view = _view(state)
    detail = view.trial(trial_id, rules)
    last = detail.events[-1].version if detail.events else 0
    pending = view.pending_approvals(detail.trial_id) if detail.running else []
    return _render(state, "trial.html", t=detail, charts=trial_charts(detail), last_version=last,
                   commands={c.version: c for c in detail.commands}, rules=rules, pending=pending,
                   approval_token=state.approval_token if _from_loopback(request) else None)


def _from_loopback(request: Request[Any, Any, Any]) -> bool:
    from opeval.viewer._server import is_loopback  # the server module imports this one

    return request.client is not None and is_loopback(request.client.host)


@post("/trials/{trial_id:str}/approvals/{step:int}", include_in_schema=False, sync_to_thread=True,
      status_code=303)
def decide_approval(request: Request[Any, Any, Any], state: State, trial_id: PageTrialId, step: FromPath[int],
                    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
                    ) -> Response[str]:
    """A person approves or denies a held command: from loopback, with this viewer's page token."""
    if not _from_loopback(request):
        raise HTTPException(status_code=403, detail="approvals are taken only from this machine (loopback)")
    if not hmac.compare_digest(str(data.get("token", "")).encode(), str(state.approval_token).encode()):
        raise HTTPException(status_code=403, detail="this form is not from this viewer's page: reload the trial page")
    decision = data.get("decision", "")
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}")
    view = _view(state)
    tid = view.resolve(trial_id, "trial")
    view.decide(tid, step, decision, f"person:viewer@{request.client.host if request.client else 'loopback'}")
    return Response("", status_code=303, headers={"Location": f"/trials/{tid}"})


@get("/trials/{trial_id:str}/export/{fmt:str}", include_in_schema=False, sync_to_thread=True)
def export_page(state: State, trial_id: PageTrialId, fmt: FromPath[str], rules: RulesParam = None) -> Response[str]:
    """The trial's postmortem as Markdown, JSON, a standalone HTML page or a Chrome trace."""
    if fmt not in EXPORTS:
        raise NotFoundError(f"no export format {fmt!r}: choose {', '.join(EXPORTS)}")
    view = _view(state)
    tid = view.resolve(trial_id, "trial")  # the file name carries the id, never the raw path
    suffix = "json" if fmt == "trace" else fmt
    return Response(view.export(tid, fmt, rules), media_type=EXPORTS[fmt], headers={
        "Content-Security-Policy": EXPORT_CSP,
        "Content-Disposition": f'inline; filename="postmortem-{tid[:8]}.{suffix}"'})


@get("/compare", include_in_schema=False, sync_to_thread=True)
def compare_page(state: State, a: Query = None, b: Query = None, campaign: Query = None,
                 rules: RulesParam = None, rules_a: Query = None, rules_b: Query = None) -> Response[str]:
    """Two campaigns side by side, or one campaign under two rule sets; forms to choose."""
    view = _view(state)
    with view.burst():
        result = _compare(view, a, b, campaign, rules, rules_a, rules_b, required=False)
        items, _ = view.campaigns({})
        rule_sets = view.rule_sets()
    return _render(state, "compare.html", result=result, campaigns=items, rule_sets=rule_sets,
                   default_key=default_rules().key,
                   query={"a": a, "b": b, "campaign": campaign, "rules": rules, "rules_a": rules_a,
                          "rules_b": rules_b},
                   a_groups=summary_rows(result.a_summary or []) if result else [],
                   b_groups=summary_rows(result.b_summary or []) if result else [])


def _compare(view: StoreView, a: str | None, b: str | None, campaign: str | None, rules: str | None,
             rules_a: str | None, rules_b: str | None, *, required: bool) -> CampaignComparison | None:
    if a or b:
        if not (a and b):
            raise UsageError("comparing campaigns needs both a= and b=")
        if campaign:
            raise UsageError("give a= and b= (two campaigns) or campaign= (two rule sets), not both")
        return view.compare_campaigns(a, b, rules)
    if campaign:
        return view.compare_rule_sets(campaign, rules_a, rules_b or rules)
    if required:
        raise UsageError("give a= and b= (two campaigns), or campaign= with rules_a= and rules_b= (two rule sets)")
    return None


# --- JSON API -------------------------------------------------------------------------------------
@get("/api/campaigns", tags=["campaigns"], sync_to_thread=True, responses=_errors(400, 503))
def api_campaigns(state: State, subject: FilterParam = None, chaos: FilterParam = None, agent: FilterParam = None,
                  variant: FilterParam = None) -> list[CampaignItem]:
    """Campaigns, newest first, with the outcomes of their trials (matching the filters)."""
    items, _ = _view(state).campaigns({"subject": subject, "chaos": chaos, "agent": agent, "variant": variant})
    return items


@get("/api/campaigns/{campaign_id:str}", tags=["campaigns"], sync_to_thread=True, responses=_errors(400, 404, 503))
def api_campaign(state: State, campaign_id: CampaignId,
                 rules: RulesParam = None,
                 sort: Annotated[SortColumn | None, QueryParameter(description="Sort the trials by this column.")] = None,
                 order: Annotated[Literal["asc", "desc"] | None, QueryParameter(description="asc or desc.")] = None,
                 ) -> CampaignDetail:
    """A campaign: each trial's metrics and score, aggregates per agent/variant with 95 %
    confidence intervals, and the agent against self-healing on the same chaos."""
    return _view(state).campaign(campaign_id, rules, sort, order == "desc")


@get("/api/trials/{trial_id:str}", tags=["trials"], sync_to_thread=True, responses=_errors(400, 404, 503))
def api_trial(state: State, trial_id: TrialId,
              rules: RulesParam = None) -> TrialDetail:
    """A trial: its setup, score (once finished), every command with its class, every event."""
    return _view(state).trial(trial_id, rules)


@get("/api/trials/{trial_id:str}/events", tags=["trials"], media_type="text/event-stream",
     response_description="A stream of server-sent events (text/event-stream).", responses=_errors(400, 404, 503))
async def api_trial_events(
    state: State, trial_id: TrialId,
    after: Annotated[int, QueryParameter(description="Send the events after this version.", ge=0,
                                         le=MAX_VERSION)] = 0,
    last_event_id: Annotated[str, HeaderParameter(
        name="Last-Event-ID", required=False, description="The last event id received (a browser reconnecting).",
        pattern=r"^[0-9]{0,10}$")] = "",
) -> ServerSentEvent:
    """Server-sent events: the trial's events as they are recorded (``trial-event``), then
    ``finished`` once the trial has ended, and the stream closes."""
    view = _view(state)
    tid = await anyio.to_thread.run_sync(view.resolve, trial_id, "trial")
    if last_event_id and last_event_id.isdigit() and int(last_event_id) <= MAX_VERSION:  # a reconnecting browser
        after = max(after, int(last_event_id))
    return ServerSentEvent(_live(view, tid, after, float(state.poll_interval_s)))


async def _live(view: StoreView, tid: str, after: int, poll_s: float, heartbeat_s: float = 15.0
                ) -> AsyncIterator[ServerSentEventMessage]:
    last, quiet = after, 0.0
    while True:
        # PostgreSQL announces every insert (LISTEN/NOTIFY): wait for that instead of polling.
        mark = await anyio.to_thread.run_sync(view.log_mark)
        events, finished = await anyio.to_thread.run_sync(view.trial_events_after, tid, last)
        for e in events:
            last = e.version
            yield ServerSentEventMessage(data=msgspec.json.encode(e).decode(), event="trial-event", id=e.version)
        if finished:
            yield ServerSentEventMessage(data=msgspec.json.encode({"version": last}).decode(), event="finished")
            return
        if mark is not None:
            announced = await anyio.to_thread.run_sync(view.wait_for_log, mark, heartbeat_s - quiet)
            quiet = 0.0 if events or announced else heartbeat_s
        else:
            quiet = 0.0 if events else quiet + poll_s
        if quiet >= heartbeat_s:  # keeps proxies and idle timeouts from closing a quiet stream
            quiet = 0.0
            yield ServerSentEventMessage(comment="waiting for events", data=None)
        if mark is None:
            await anyio.sleep(poll_s)


@get("/api/compare", tags=["comparisons"], sync_to_thread=True, responses=_errors(400, 404, 503))
def api_compare(state: State, a: CampaignRef, b: CampaignRef, rules: RulesParam = None) -> CampaignComparison:
    """Two campaigns, ``a`` and ``b``, under one rule set (``rules``), metric by metric:
    bootstrap 95 % intervals; paired by chaos, target and seed when possible."""
    return _view(state).compare_campaigns(a, b, rules)


@get("/api/campaigns/{campaign_id:str}/rescored", tags=["comparisons"], sync_to_thread=True,
     responses=_errors(400, 404, 503))
def api_rescored(state: State, campaign_id: CampaignId, rules_a: RulesParam = None,
                 rules_b: RulesParam = None) -> CampaignComparison:
    """One campaign under two rule sets (``rules_a``, by default the default rule set, and
    ``rules_b``, by default another scored one): metrics side by side and each trial's change."""
    return _view(state).compare_rule_sets(campaign_id, rules_a, rules_b)


@get("/api/rule-sets", tags=["comparisons"], sync_to_thread=True, responses=_errors(503))
def api_rule_sets(state: State) -> list[RuleSetInfo]:
    """The scoring rule sets the read models hold scores for."""
    return _view(state).rule_sets()


# --- the lock of a shared viewer -------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    # Only a path of this viewer: never an absolute or scheme-relative URL (an open redirect).
    return target if target and target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@get("/login", include_in_schema=False, sync_to_thread=False)
def login_form(state: State, next: Query = None) -> Response[str]:  # noqa: A002 - the form's field
    """The login form of a locked viewer."""
    return _render(state, "login.html", message="Give the viewer's token to open it.", next=_safe_next(next))


@post("/login", include_in_schema=False, sync_to_thread=False, status_code=303)
def login(state: State, data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
          ) -> Response[str]:
    """Check the token; on success set the session cookie and go where the user was going."""
    token: str | None = state.token
    given = str(data.get("token", ""))
    if token is None or not hmac.compare_digest(given.encode(), token.encode()):
        page = _render(state, "login.html", message="That is not the token of this viewer.",
                       next=_safe_next(data.get("next")))
        page.status_code = 401
        return page
    return Response("", status_code=303, headers={"Location": _safe_next(data.get("next"))},
                    cookies=[Cookie(key=COOKIE, value=session_value(token), httponly=True, samesite="strict",
                                    path="/")])


# --- errors and headers ----------------------------------------------------------------------------
_TITLES = {400: "Bad request", 401: "Locked", 403: "Refused", 404: "Not found", 405: "Not allowed", 503: "Busy or unavailable",
           500: "Something went wrong"}


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


def _on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status = _status(exc)
    if isinstance(exc, OpevalError):
        message = str(exc)
    elif isinstance(exc, HTTPException):
        message = exc.detail if status != 404 else f"there is no page at {request.url.path}"
    else:
        log.exception("error serving %s", request.url.path)
        message = "the viewer failed to answer this request; the details are in its log"
    url = exc.url if isinstance(exc, WrongKindError) else None
    # Every route of the viewer is a GET, but the login form's.
    posts = request.url.path == "/login" or "/approvals/" in request.url.path
    headers = {"Allow": "GET, POST" if posts else "GET"} if status == 405 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="opeval viewer"'}
    if request.url.path.startswith("/api/") or request.url.path.startswith("/schema"):
        return Response(ErrorBody(status_code=status, detail=message, see=url), status_code=status, headers=headers)
    pages: Pages = request.app.state.pages
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _html(pages.render("login.html", message="Give the viewer's token to open it.",
                                  next=_safe_next(target)), 401)
    page = _html(pages.render("error.html", status=status, title=_TITLES.get(status, "Error"), message=message,
                              url=url), status)
    if headers:
        page.headers.update(headers)
    return page


async def _security_headers(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        if "content-security-policy" not in headers:
            headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"


def create_app(store_path: StoreLocation | str, *, poll_interval_s: float = 0.5, busy_timeout_s: float = 5.0,
               cache_size: int = 32, token: str | None = None) -> Litestar:
    """The viewer of the store at ``store_path`` as an ASGI application.

    ``poll_interval_s`` is how often a live page's stream looks for new events in a
    SQLite store (a PostgreSQL store announces them, and nothing polls);
    ``busy_timeout_s`` how long a request waits for read models another process holds;
    ``cache_size`` how many answers are kept while the store does not change (0: none);
    ``token``: every page and API call needs it (see ``_lock``).
    """
    path = resolve_store_path(store_path)
    view = StoreView(path, busy_timeout_s=busy_timeout_s, cache_size=cache_size)
    return Litestar(
        on_shutdown=[view.close],
        route_handlers=[
            campaigns_page, campaign_page, trial_page, export_page, compare_page, login_form, login, decide_approval,
            api_campaigns, api_campaign, api_trial, api_trial_events, api_compare, api_rescored, api_rule_sets,
            create_static_files_router(path="/static", directories=[viewer_dir() / "static"]),
        ],
        state=State({"view": view, "pages": Pages(path), "poll_interval_s": poll_interval_s, "token": token,
                     # per process: approval forms carry it, so only this viewer's own pages can decide
                     "approval_token": secrets.token_urlsafe(24)}),
        middleware=[TokenLock(token)] if token else [],
        exception_handlers={Exception: _on_error},
        before_send=[_security_headers],
        openapi_config=OpenAPIConfig(
            title="opeval viewer", version=opeval.__version__, path="/schema",
            description="Read-only JSON over an opeval store's read models: campaigns, trials, comparisons.",
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])]),
        debug=False,
    )
