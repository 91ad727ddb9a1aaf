"""The dashboard's web app (Starlette): four pages, their JSON APIs, one SSE stream per page, the
operator's kill/release, and /metrics.

Pages are static HTML shells (static/pages/*.html inside static/layout.html) whose scripts fetch
the JSON and open the page's stream; nothing is built at run time and nothing is loaded from
outside (the Content-Security-Policy allows this origin only).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tokenfuse.config import Settings
from tokenfuse.control.manual import publish_manual_state
from tokenfuse.dashboard.hub import METRICS_GAUGES, METRICS_HELP, Channel, Hub
from tokenfuse.dashboard.security import ALLOWED_HOSTS, post_problem
from tokenfuse.dashboard.views import Views, concrete_scope
from tokenfuse.errors import TokenfuseError
from tokenfuse.observability.metrics import render

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("now", "Now"), "/scope": ("scope", "Scope"), "/top": ("top", "Top spenders"),
         "/history": ("history", "History")}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ACTIONS = {"kill": "block", "release": "allow"}


@dataclass
class Dashboard:
    """What the routes need: the settings, the views, the hub, the operator token (None = off)."""

    settings: Settings
    views: Views
    hub: Hub
    token: str | None
    on_ready: Callable[[], None] = lambda: None


def render_page(name: str, title: str) -> str:
    layout = (STATIC / "layout.html").read_text()
    main = (STATIC / "pages" / f"{name}.html").read_text()
    return layout.replace("{{title}}", title).replace("{{page}}", name).replace("{{main}}", main)


def create_app(dashboard: Dashboard) -> Starlette:
    pages = {path: render_page(name, title) for path, (name, title) in PAGES.items()}

    def page(request: Request) -> Response:
        return HTMLResponse(pages[request.url.path], headers=SECURITY_HEADERS)

    async def api(request: Request) -> Response:
        view = request.path_params["view"]
        q = request.query_params
        calls: dict[str, Callable[[], dict[str, Any]]] = {
            "now": lambda: {"live": dashboard.views.now_live(), "spend": dashboard.views.now_spend()},
            "scope": lambda: {"live": dashboard.views.scope_live(concrete_scope(q.get("key", ""))),
                              "spend": dashboard.views.scope_spend(q.get("key", ""), q.get("range"),
                                                                   q.get("metric", "cost_micro_usd"),
                                                                   q.get("from"), q.get("to"))},
            "top": lambda: dashboard.views.top(q.get("kind", "agent"), q.get("metric", "cost_micro_usd"),
                                               q.get("range"), q.get("from"), q.get("to")),
            "history": lambda: dashboard.views.history(q.get("scope", "global"), q.get("metric", "cost_micro_usd"),
                                                       q.get("range"), q.get("from"), q.get("to")),
            "config": lambda: {"operator": dashboard.token is not None},
        }
        if view not in calls:
            return JSONResponse({"error": f"no API {view!r}"}, 404, headers=SECURITY_HEADERS)
        try:
            return JSONResponse(await asyncio.to_thread(calls[view]), headers=SECURITY_HEADERS)
        except (TokenfuseError, OSError) as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=SECURITY_HEADERS)

    async def events(request: Request) -> Response:
        q = request.query_params
        try:
            if request.path_params["page"] == "now":
                channel = Channel("now")
            elif request.path_params["page"] == "scope":
                channel = Channel("scope", concrete_scope(q.get("key", "")), q.get("range", ""))
            else:
                return JSONResponse({"error": "no such stream"}, 404, headers=SECURITY_HEADERS)
        except TokenfuseError as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=SECURITY_HEADERS)
        return EventSourceResponse(dashboard.hub.subscribe(channel), ping=15, headers=SECURITY_HEADERS)

    async def control(request: Request) -> Response:
        problem = post_problem({k.lower(): v for k, v in request.headers.items()}, dashboard.token)
        if problem:
            return JSONResponse({"error": problem}, 403, headers=SECURITY_HEADERS)
        try:
            body = await request.json()
            state = ACTIONS[body["action"]]
            scope, reason = concrete_scope(str(body["scope"])), str(body.get("reason") or "").strip()
            until = str(body["until"]) if body.get("until") else None
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected JSON {"action": "kill"|"release", "scope", "reason", "until"}'},
                                400, headers=SECURITY_HEADERS)
        except TokenfuseError as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=SECURITY_HEADERS)
        if state == "block" and not reason:
            return JSONResponse({"error": "a kill needs a reason"}, 400, headers=SECURITY_HEADERS)
        try:
            record = await asyncio.to_thread(publish_manual_state, dashboard.settings, scope, state,
                                             reason or "released from the dashboard", until)
        except TokenfuseError as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=SECURITY_HEADERS)
        return JSONResponse({"published": record}, headers=SECURITY_HEADERS)

    async def metrics(_request: Request) -> Response:
        body, content_type = render(dashboard.hub.metrics(), "tokenfuse_dashboard", METRICS_GAUGES, METRICS_HELP)
        return Response(body, headers={**SECURITY_HEADERS, "Content-Type": content_type})

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "channels": len(dashboard.hub.queues)}, headers=SECURITY_HEADERS)

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        await dashboard.hub.start()
        dashboard.on_ready()
        try:
            yield
        finally:
            await dashboard.hub.stop()

    routes = [Route(path, page) for path in PAGES] + [
        Route("/api/{view}", api),
        Route("/events/{page}", events),
        Route("/control", control, methods=["POST"]),
        Route("/health", health),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=ALLOWED_HOSTS)])
