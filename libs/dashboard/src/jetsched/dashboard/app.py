"""The dashboard's HTTP side: static files, JSON endpoints over the control API, and the event stream.

Every endpoint is a thin call to intake's control API (`jetsched.api.*`) through the SDK `Client`; the
dashboard keeps no state of its own beyond the live feed (`live.py`). Parameters are checked in
`params.py`, access in `access.py`, and list replies are cut to summaries in `shapes.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from nats.errors import NoRespondersError

from jetsched.bus.connect import redact
from jetsched.sdk import Client, JetschedApiError

from . import bulk, params, shapes
from .access import TOKEN_HEADER, WILDCARD_BINDS, Access, allowed_hosts, host_ok, origin_ok
from .events import KEEPALIVE, frame
from .live import MAX_STREAMS, Hub

if TYPE_CHECKING:
    from collections.abc import Callable

    from jetsched.bus.auth import NatsAuth

log = logging.getLogger(__name__)

STATIC = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: A POST body is a small JSON object at most.
MAX_BODY = 16 * 1024
#: Bulk actions act on at most this many dead letters, found among at most `BULK_SCAN` of them.
BULK_MAX = 1000
BULK_SCAN = 20_000
KEEPALIVE_S = 15.0
#: How often an idle event stream looks whether its client is still there. aiohttp notices a gone client
#: only at the next write (handlers are not cancelled on disconnect, so a POST action runs to its end),
#: and an idle stream writes once per `KEEPALIVE_S`: its slot among `live.MAX_STREAMS` is freed within
#: this instead.
GONE_CHECK_S = 1.0
STATUS = {"not_found": 404, "invalid_state": 409, "unavailable": 503, "quarantined": 410, "internal": 502}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(code: str, message: str, status: int, field: str | None = None) -> web.Response:
    return _json({"error": {"code": code, "message": message, "field": field}}, status)


class Dashboard:
    """The aiohttp application around one `Client` and one `Hub`."""

    def __init__(
        self,
        nats_url: str,
        auth: NatsAuth | None = None,
        access: Access | None = None,
        allow_hosts: tuple[str, ...] = (),
        timeout: float = 5.0,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.nats_url = nats_url
        self.access = access or Access()
        self.allow_hosts = allow_hosts
        #: `Host` values answered (`ANY_HOST` among them: any); None until the port is bound, and nothing
        #: is answered.
        self.hosts: frozenset[str] | None = None
        self.client = Client(nats_url, timeout=timeout, auth=auth)
        self.hub = Hub(nats_url, auth, max_streams)
        self._static = {
            name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        get, post = web.get, web.post
        app.add_routes(
            [
                get("/", self.index),
                get("/static/{name}", self.static),
                get("/api/session", self.session),
                get("/api/events", self.events),
                get("/api/queues", self.queues),
                get("/api/workers", self.workers),
                get("/api/jobs", self.jobs),
                get("/api/jobs/{id}", self.job),
                get("/api/dead", self.dead),
                get("/api/schedules", self.schedules),
                get("/api/schedules/{id}/preview", self.preview),
                get("/api/workflows", self.workflows),
                get("/api/workflows/{id}", self.workflow),
                post("/api/queues/{capability}/{verb:pause|resume}", self.pause),
                post("/api/workers/{session}/drain", self.drain),
                post("/api/jobs/{id}/cancel", self.cancel),
                post("/api/dead/{id}/{verb:retry|purge}", self.dead_one),
                post("/api/dead/bulk/{verb:retry|purge}", self.dead_bulk),
            ]
        )
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        await self.client.connect()
        try:
            await self.hub.start()
        except Exception as exc:  # e.g. an identity without read access to the feed (docs/security.md)
            log.warning("no live updates: the record feed could not be followed", extra={"error": repr(exc)})

    async def _stop(self, app: web.Application) -> None:
        await self.hub.stop()
        with contextlib.suppress(Exception):
            await self.client.close()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.hosts is None or not host_ok(request.headers.get("Host"), self.hosts):
            return _error("forbidden_host", "unknown Host (see --allow-host)", 421)
        if request.method == "POST":
            if not origin_ok(request.headers.get("Origin"), request.headers.get("Host")):
                return _error("forbidden", "cross-origin requests are refused", 403)
            refusal = self.access.refusal(request.headers.get(TOKEN_HEADER))
            if refusal is not None:
                return _error("forbidden", refusal, 403)
        try:
            response: web.StreamResponse = await handler(request)
        except params.BadParam as exc:
            response = _json(exc.body(), 400)
        except JetschedApiError as exc:
            response = _error(exc.code, exc.message, STATUS.get(exc.code, 400), exc.field)
        except (TimeoutError, NoRespondersError):
            response = _error("unavailable", "jetsched did not answer in time", 503)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._static["index.html"], content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=self._static[name], content_type=STATIC[name], charset="utf-8")

    async def session(self, request: web.Request) -> web.Response:
        return _json(
            {
                "operator": self.access.operator,
                "authorized": self.access.refusal(request.headers.get(TOKEN_HEADER)) is None,
                "live": self.hub.live,
                "nats": redact(self.nats_url),
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        params.query(request.query, ())
        stream = self.hub.subscribe()
        if stream is None:
            reason = f"{self.hub.max_streams} live event streams are open, the most this dashboard serves"
            return _error("too_many_streams", reason + "; try again later", 503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS})
        try:
            await response.prepare(request)
            await response.write(frame("hello", {"live": self.hub.live}))
            idle_s = 0.0
            while request.transport is not None:  # None: the connection is gone
                try:
                    event, data = await asyncio.wait_for(stream.get(), GONE_CHECK_S)
                except TimeoutError:
                    idle_s += GONE_CHECK_S
                    if idle_s >= KEEPALIVE_S:
                        await response.write(KEEPALIVE)
                        idle_s = 0.0
                    continue
                await response.write(frame(event, data))
                idle_s = 0.0
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(stream)
        return response

    async def _api(self, name: str, body: dict[str, Any]) -> Any:
        return await self.client.request(f"jetsched.api.{name}", body)

    async def queues(self, request: web.Request) -> web.Response:
        params.query(request.query, ())
        stats, settings = await asyncio.gather(self._api("stats", {}), self._api("queues.list", {}))
        configured = settings.get("queues", {})
        names = sorted({*stats.get("queues", {}), *stats.get("capabilities", {}), *configured})
        rows = [
            {
                "capability": name,
                **stats.get("queues", {}).get(name, {}),
                "states": stats.get("capabilities", {}).get(name, {}),
                "settings": configured.get(name, {}),
            }
            for name in names
        ]
        return _json({"queues": rows, "jobs": stats.get("jobs", {}), "workers": stats.get("workers", {})})

    async def workers(self, request: web.Request) -> web.Response:
        params.query(request.query, ())
        return _json(await self._api("workers.list", {}))

    async def jobs(self, request: web.Request) -> web.Response:
        return _json(shapes.page(await self._api("jobs.list", params.job_filters(request.query))))

    async def job(self, request: web.Request) -> web.Response:
        params.query(request.query, ())
        reply = await self._api("jobs.get", {"id": params.job_id(request.match_info["id"])})
        return _json({**reply, "timeline": shapes.timeline(reply["job"])})

    async def dead(self, request: web.Request) -> web.Response:
        body, kind = params.dead_filters(request.query)
        return _json(shapes.page(await self._api("dead.list", body), kind))

    async def schedules(self, request: web.Request) -> web.Response:
        params.query(request.query, ())
        return _json(await self._api("schedules.list", {}))

    async def preview(self, request: web.Request) -> web.Response:
        given = params.query(request.query, ("count",))
        count = params.count(given.get("count"), "count", 10, params.MAX_PREVIEW)
        body = {"id": params.schedule_id(request.match_info["id"]), "count": count}
        return _json(await self._api("schedules.preview", body))

    async def workflows(self, request: web.Request) -> web.Response:
        return _json(await self._api("workflows.list", params.workflow_filters(request.query)))

    async def workflow(self, request: web.Request) -> web.Response:
        params.query(request.query, ())
        return _json(await self._api("workflows.get", {"id": params.workflow_id(request.match_info["id"])}))

    async def pause(self, request: web.Request) -> web.Response:
        capability = params.capability(request.match_info["capability"])
        return _json(await self._api(f"queues.{request.match_info['verb']}", {"capability": capability}))

    async def drain(self, request: web.Request) -> web.Response:
        session = params.session(request.match_info["session"])
        return _json(await self._api("workers.drain", {"session": session}))

    async def cancel(self, request: web.Request) -> web.Response:
        return _json(await self._api("jobs.cancel", {"id": params.job_id(request.match_info["id"])}))

    async def dead_one(self, request: web.Request) -> web.Response:
        job_id = params.job_id(request.match_info["id"])
        return _json(await self._api(f"dead.{request.match_info['verb']}", {"id": job_id}))

    async def dead_bulk(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise params.BadParam("body", "a JSON object") from None
        capability, kind = params.bulk(body)
        found = await bulk.dead_of_type(self.client, kind, capability, limit=BULK_MAX, max_scan=BULK_SCAN)
        result = await bulk.act_on_dead(self.client, request.match_info["verb"], found.ids)
        return _json({**result, "scanned": found.scanned, "truncated": found.truncated})


def own_names() -> tuple[str, ...]:
    """This machine's host name, FQDN and their addresses: the names a dashboard bound to every address
    answers besides loopback (best effort — a name that does not resolve adds no address)."""
    names = {socket.gethostname(), socket.getfqdn()}
    addresses: set[str] = set()
    for name in names:
        try:
            found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        addresses.update(str(info[4][0]) for info in found if "%" not in str(info[4][0]))
    return tuple(sorted(n for n in names | addresses if n))


async def serve(
    dashboard: Dashboard, host: str, port: int, ready: Callable[[int], None] | None = None
) -> None:
    """Serve until cancelled; `ready` is called with the bound port (useful with port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    own = await asyncio.to_thread(own_names) if host in WILDCARD_BINDS else ()
    dashboard.hosts = allowed_hosts(host, bound, dashboard.allow_hosts, own)
    runner = web.AppRunner(dashboard.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        if ready is not None:
            ready(bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
