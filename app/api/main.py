"""Assembles the routers; nothing else."""

from fastapi import APIRouter

from app.api.routes import classify, gbif, health, lookup, models

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(models.router)
api_router.include_router(classify.router)
api_router.include_router(lookup.router)
api_router.include_router(gbif.router)
