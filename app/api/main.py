"""Assembles the routers; nothing else.

Health, model listing (and the Open Inference Protocol's /v2 health and metadata) and the docs
are open; the photo and GBIF endpoints pass ``require_access``
(API keys and rate limit, when configured); index writes have their own admin token.
"""

from fastapi import APIRouter

from app.api.access import AccessDep
from app.api.routes import classify, explain, gbif, health, identify, lookup, models, v2

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(health.metrics_router)
api_router.include_router(models.router)
api_router.include_router(v2.router)  # Open Inference Protocol: health, metadata (read-only)
api_router.include_router(identify.router, dependencies=[AccessDep])
api_router.include_router(classify.router, dependencies=[AccessDep])
api_router.include_router(lookup.router, dependencies=[AccessDep])
api_router.include_router(explain.router, dependencies=[AccessDep])
api_router.include_router(gbif.router, dependencies=[AccessDep])
api_router.include_router(lookup.admin_router)
