"""The FastAPI application: `create_app()` for tests, module-level `app` for uvicorn (`service.app:app`).

Start-up (lifespan) does, in this order and never at import: the process tuning of service.runtime
(one BLAS thread, the switch interval), the model from MLflow (RECO_MODEL_URI), the Feast store and
its feature services, the item catalog, the recipes, `gc.freeze`; then it starts the background
alias poll and item refresh. A dependency that fails here leaves the service up and answering
fallbacks (`/health/ready` says what is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service.admin import routes as admin
from service.baskets import routes as baskets
from service.config import ServiceSettings, load_service_settings
from service.edge import install_limits
from service.errors import install_error_handlers, unexpected_error
from service.events import routes as events
from service.events.store import open_event_store
from service.model import ModelHolder
from service.observability import RequestContextMiddleware, configure_logging
from service.online.features import OnlineFeatures
from service.online.items import offline_item_ids
from service.recaps import routes as recaps
from service.recipes import routes as recipes
from service.recipes.service import load_recipes
from service.recommendations import routes as recommendations
from service.runtime import freeze_heap, telemetry, tune_process, unfreeze_heap
from service.shelves import routes as shelves
from service.state import Services

log = logging.getLogger("reco.service")

ITEM_SWEEP_SECONDS = 3600.0  # re-read item_stats at least this often, written or not

DESCRIPTION = """Personalized recommendations, shop-by-recipe carts, yearly recaps and purchase events.

Every endpoint under /v1 and /admin needs an `X-API-Key` with the endpoint's scope
(recommend, recaps, events, admin). Answers carry `source` (which link of the fallback chain
model → item-to-item → popular-in-category → popular answered) and `degraded` (a dependency was
skipped). Errors are JSON: `{"detail": ..., "request_id": ...}`."""


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan runs."""
    settings = settings or load_service_settings()
    configure_logging()
    if settings.auth == "enabled" and not settings.api_keys:
        log.warning(
            "RECO_API_KEYS is empty: every /v1 and /admin request will answer 401 "
            "(set keys, or RECO_AUTH=disabled for a local demo)"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(_start, settings)
        app.state.services = services
        tasks = []
        if settings.reload_poll_seconds > 0:
            tasks.append(asyncio.create_task(services.holder.poll_forever(settings.reload_poll_seconds)))
        if settings.item_refresh_seconds > 0 and services.features.available:
            tasks.append(asyncio.create_task(_refresh_items_forever(services, settings.item_refresh_seconds)))
        if settings.state_poll_seconds > 0 and services.features.available:
            tasks.append(asyncio.create_task(_watch_state_forever(services, settings.state_poll_seconds)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            services.features.close()
            services.events.close()
            unfreeze_heap()

    app = FastAPI(
        title="reco",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=telemetry(),
        docs_url=None,  # served below from a package's assets: FastAPI's own pages load them from a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    install_offline_docs(app)
    routers = [module.router for module in (recommendations, shelves, baskets, recipes, recaps, events, admin)]
    for router in routers:
        app.include_router(router)
    install_limits(app, settings, routers)
    app.add_middleware(RequestContextMiddleware, unexpected=unexpected_error)
    return app


DOCS_ASSETS = "/docs-assets"


def install_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the assets the fastapi-offline package ships, so the pages
    work without internet; nothing else of that package is used."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="reco: API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="reco: API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, include_in_schema=False)
    app.add_api_route("/redoc", redoc, include_in_schema=False)


def _start(settings: ServiceSettings) -> Services:
    """Blocking start-up work (runs in a thread so the loop stays free)."""
    tune_process()
    _ = settings.recap_brand  # the recap page's shop, read once (a bad RECO_BRAND file stops start-up)
    holder = ModelHolder(settings)
    try:
        holder.reload()
    except Exception as exc:
        log.warning("no model loaded at start-up (serving fallbacks until one loads): %s", exc)
    features = OnlineFeatures(settings)
    features.open()
    features.warm()
    services = Services(
        settings=settings,
        holder=holder,
        features=features,
        events=open_event_store(settings),
        recipes=load_recipes(settings=settings),
    )
    _refresh_items(services)
    freeze_heap()
    return services


def _refresh_items(services: Services, *, full: bool = True) -> None:
    """Item attributes and availability from item_stats; availability goes into the served bundle."""
    current = services.holder.current
    if not services.features.available or services.features.populated is False:
        return  # an emptied store would only empty the catalog: keep the previous one
    try:
        item_ids = current.bundle.item_ids.tolist() if current is not None else offline_item_ids(services.settings)
        catalog = services.features.items.refresh(item_ids, full=full)
    except Exception as exc:
        log.warning("item_stats refresh failed, keeping the previous catalog: %s", str(exc).splitlines()[0][:200])
        return
    services.holder.set_availability(catalog.availability())


async def _refresh_items_forever(services: Services, every: float) -> None:
    """Background task: availability and popularity of the served items from item_stats.

    Every `every` seconds it asks whether item_stats was written since the last read (on Redis,
    one GET of the write counter); it re-reads only then, and at least every ITEM_SWEEP_SECONDS
    (rows age past the view's ttl, and writers other than ours do not count). Re-reading 50k
    items costs about 0.3 s of CPU beside the requests; doing it every minute cost p99."""
    items = services.features.items
    last_writes: int | None = None
    last_sweep = time.monotonic()
    while True:
        await asyncio.sleep(every)
        writes = await asyncio.to_thread(items.writes)
        if writes is not None and writes == last_writes and time.monotonic() - last_sweep < ITEM_SWEEP_SECONDS:
            continue
        await asyncio.to_thread(_refresh_items, services, full=False)
        last_writes, last_sweep = writes, time.monotonic()
        await asyncio.to_thread(freeze_heap)  # the new catalog's 50k entries, as at start-up


async def _watch_state_forever(services: Services, every: float) -> None:
    """Background task: the online store's shared state (service.online.features.check_state):
    whether it is materialized, and the reload signal; a new signal reloads this worker's model,
    so every worker serves the version one POST /admin/reload loaded within `every` plus a load."""
    features, holder = services.features, services.holder
    seen = await asyncio.to_thread(features.check_state)
    while True:
        await asyncio.sleep(every)
        signal = await asyncio.to_thread(features.check_state)
        if signal is None or signal == seen:
            continue
        seen = signal
        try:
            result = await asyncio.to_thread(holder.reload)
            if result.changed:
                log.info("reload signalled: version %s → %s", result.previous, result.version)
        except Exception as exc:
            log.warning(
                "signalled reload failed, keeping version %s: %s", holder.current and holder.current.version, exc
            )


def __getattr__(name: str) -> Any:
    # `uvicorn service.app:app` builds the app on first access, not when the module is imported.
    if name == "app":
        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)
