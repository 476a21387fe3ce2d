"""`voicefleet orchestrator`: HTTP (/healthz, /readyz, /metrics, /token), WebSocket (/ws), the
Wyoming endpoint when enabled, the shared services (ASR model, fleet view, worker channels),
access control, and clean shutdown; `voicefleet wyoming`: the Wyoming endpoint alone."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voicefleet import tracing
from voicefleet.asr.service import ASRService
from voicefleet.fleet import FleetView, NoWorkerAvailable, Router
from voicefleet.fleet.pool import WorkerPool
from voicefleet.orchestrator.access import AccessToken, access_middleware
from voicefleet.orchestrator.config import OrchestratorConfig
from voicefleet.orchestrator.controller import released
from voicefleet.orchestrator.loop_lag import LoopLag
from voicefleet.orchestrator.metrics import OrchestratorMetrics
from voicefleet.orchestrator.responder import Responder, create_responder
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.transports.admission import ClientAddress, ConnectionRate
from voicefleet.orchestrator.transports.openai.context import OpenAIApi
from voicefleet.orchestrator.transports.openai.routes import ROUTES as OPENAI_ROUTES
from voicefleet.orchestrator.transports.openai.routes import add_openai_routes
from voicefleet.orchestrator.transports.websocket import WebSocketTransport
from voicefleet.orchestrator.transports.wyoming import WyomingServer

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "client" / "web"
# Routes open to anyone even when http.auth_token is set (by route path; /static is the prefix
# of the page's files). Every other route, including any added later, needs the token; /ws may
# present it in hello instead. /metrics joins the open ones unless http.metrics_auth.
PUBLIC_ROUTES = frozenset({"/", "/static", "/healthz", "/readyz"})
HELLO_AUTH_ROUTES = frozenset({"/ws"})


@dataclass
class Orchestrator:
    """The running process's parts."""

    config: OrchestratorConfig
    services: Services
    fleet: FleetView
    transport: WebSocketTransport
    app: web.Application
    wyoming: WyomingServer | None = None
    loop_lag: asyncio.Task[None] | None = None

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready when the ASR model is loaded and at least one worker is routable; the registry's
        state (ok or why not), its last successful read and its skipped records are reported."""
        checks: dict[str, object] = {"asr": self.services.asr.ready}
        try:
            workers = self.services.router.candidates()
            checks["workers"] = [w.name for w in workers]
        except NoWorkerAvailable as error:
            checks["workers"] = []
            checks["workers_error"] = str(error)
        fleet = self.fleet
        checks["registry"] = fleet.state()
        checks["registry_read_s_ago"] = (
            round(time.monotonic() - fleet.last_refresh, 3) if fleet.last_refresh else None
        )
        checks["registry_read_at"] = fleet.last_refresh_at or None
        checks["registry_skipped"] = [
            {"name": entry.name, "reason": entry.reason.value, "detail": entry.detail}
            for entry in fleet.skipped.values()
        ]
        checks["sessions"] = len(self.transport.sessions)
        checks["connections"] = len(self.transport.connections)
        if self.wyoming is not None:
            checks["wyoming_connections"] = len(self.wyoming.connections)
        ready = bool(checks["asr"]) and bool(checks["workers"])
        return ready, checks


def livekit_token(config: OrchestratorConfig, request: web.Request) -> web.Response:
    """GET /token?room=R&identity=I: a LiveKit room token for the web page (404 unless the API
    key and secret are configured; 400 naming the bad parameter)."""
    livekit = config.transport.livekit
    credentials = livekit.credentials()
    if credentials is None:
        message = f"LiveKit is not configured ({livekit.api_key_env}, {livekit.api_secret_env})"
        return web.json_response({"error": "livekit_disabled", "message": message}, status=404)
    from voicefleet.orchestrator.transports.livekit import TokenRequestError, mint_token

    room = request.query.get("room", "")
    identity = request.query.get("identity", "")
    try:
        jwt = mint_token(
            *credentials, room, identity, livekit.token_ttl_s, agent_name=livekit.agent_name
        )
    except TokenRequestError as error:
        return web.json_response({"error": "bad_request", "message": str(error)}, status=400)
    url = livekit.public_url or livekit.url or os.environ.get("LIVEKIT_URL", "")
    return web.json_response({"token": jwt, "url": url, "room": room, "identity": identity})


def build_services(config: OrchestratorConfig) -> tuple[Services, FleetView]:
    """What every transport of the process shares, and the fleet view under its router."""
    fleet = FleetView(config.router)
    services = Services(
        config=config.pipeline,
        asr=ASRService(config.asr),
        router=Router(fleet),
        pool=WorkerPool(config.router.worker),
        metrics=OrchestratorMetrics(),
    )
    return services, fleet


def build(config: OrchestratorConfig) -> Orchestrator:
    """Assemble services and routes (nothing is started)."""
    services, fleet = build_services(config)

    def new_responder() -> Responder:
        return create_responder(config.responder)

    secret = config.http.access_token()
    access = AccessToken(secret) if secret else None
    transport = WebSocketTransport(services, new_responder, config.http, access)
    public = PUBLIC_ROUTES if config.http.metrics_auth else PUBLIC_ROUTES | {"/metrics"}
    if config.openai_api.enabled:
        public |= OPENAI_ROUTES  # each checks the token itself, answering in OpenAI's shape
    app = web.Application(
        middlewares=[access_middleware(access, public=public, deferred=HELLO_AUTH_ROUTES)]
    )
    app.on_shutdown.append(transport.shutdown)
    wyoming = config.transport.wyoming
    orchestrator = Orchestrator(
        config,
        services,
        fleet,
        transport,
        app,
        WyomingServer(wyoming, services) if wyoming.enabled else None,
    )

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, checks = orchestrator.readiness()
        return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        services.metrics.sync_registry_skipped(fleet.skipped_total)
        body = generate_latest(services.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def token(request: web.Request) -> web.Response:
        return livekit_token(config, request)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/token", token)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ws", transport.handle)
    if config.openai_api.enabled:
        api = OpenAIApi(
            config.openai_api,
            services,
            fleet,
            access,
            ClientAddress(config.http.trusted_proxies),
            ConnectionRate(config.openai_api.requests_per_ip_per_minute),
        )
        add_openai_routes(app, api)
    if (WEB_DIR / "index.html").is_file():

        async def index(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/static/", WEB_DIR)
    return orchestrator


async def start(orchestrator: Orchestrator) -> web.AppRunner:
    """Load the ASR model, read the fleet, start listening."""
    config = orchestrator.config
    await orchestrator.services.asr.start()
    await orchestrator.fleet.start()
    _warn_if_open(config)
    if orchestrator.wyoming is not None:
        await orchestrator.wyoming.start()
    runner = web.AppRunner(orchestrator.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    await site.start()
    lag = LoopLag(orchestrator.services.metrics.loop_lag_seconds.observe)
    orchestrator.loop_lag = asyncio.create_task(lag.run())
    log.info(
        "orchestrator listening on http://%s:%d (WebSocket /ws, /healthz, /readyz, /metrics); "
        "%d TTS worker(s) known",
        config.http.host,
        config.http.port,
        len(orchestrator.fleet.workers),
    )
    return runner


def _warn_if_open(config: OrchestratorConfig) -> None:
    if config.http.access_token() is not None:
        return
    if not _is_loopback(config.http.host):
        log.warning(
            "no http.auth_token: anyone who reaches %s:%d can open sessions on /ws",
            config.http.host,
            config.http.port,
        )
    if config.transport.livekit.credentials() is not None:
        log.warning("no http.auth_token: /token mints LiveKit room tokens for anyone")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def stop(orchestrator: Orchestrator, runner: web.AppRunner) -> None:
    """Stop listening, end every WebSocket session (error `shutdown`, worker sessions ended;
    the transport's on_shutdown hook) and every Wyoming connection, then close the fleet view,
    channels and the ASR pool."""
    if orchestrator.wyoming is not None:
        await orchestrator.wyoming.stop()
    await runner.cleanup()
    await released()  # sessions closed by a transport other than the WebSocket (LiveKit)
    await orchestrator.fleet.close()
    await orchestrator.services.pool.close()
    orchestrator.services.asr.close()
    if orchestrator.loop_lag is not None:
        orchestrator.loop_lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await orchestrator.loop_lag


async def serve(config: OrchestratorConfig, stop_event: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or stop_event)."""
    tracing.configure(config.tracing, "orchestrator")
    orchestrator = build(config)
    runner = await start(orchestrator)
    stop_event = stop_event or asyncio.Event()
    livekit_worker: asyncio.Task[None] | None = None
    if config.transport.livekit.enabled:
        from voicefleet.orchestrator.transports.livekit import run_worker

        livekit_worker = asyncio.create_task(run_worker(config, config.transport.livekit))
        livekit_worker.add_done_callback(lambda task: _livekit_ended(task, stop_event))
    _stop_on_signals(stop_event)
    await stop_event.wait()
    log.info("orchestrator shutting down")
    if livekit_worker is not None:
        livekit_worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await livekit_worker
    await stop(orchestrator, runner)
    tracing.shutdown()


def _livekit_ended(task: asyncio.Task[None], stop_event: asyncio.Event) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("the LiveKit worker stopped: %s", error)
        stop_event.set()


def _stop_on_signals(stop_event: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)


async def serve_wyoming(
    config: OrchestratorConfig, stop_event: asyncio.Event | None = None
) -> None:
    """`voicefleet wyoming`: the Wyoming endpoint alone (no HTTP), on services of its own, until
    SIGINT/SIGTERM (or stop_event)."""
    services, fleet = build_services(config)
    server = WyomingServer(config.transport.wyoming, services)
    stop_event = stop_event or asyncio.Event()
    _stop_on_signals(stop_event)
    try:
        await services.asr.start()
        await fleet.start()
        await server.start()
        log.info("%d TTS worker(s) known", len(fleet.workers))
        await stop_event.wait()
        log.info("Wyoming endpoint shutting down")
    finally:
        await server.stop()
        await fleet.close()
        await services.pool.close()
        services.asr.close()
