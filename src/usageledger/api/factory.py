"""The uvicorn factory: ``usageledger.api.factory:app_from_environment``."""

from __future__ import annotations

from fastapi import FastAPI

from usageledger.api.app import create_app
from usageledger.config import load_settings


def app_from_environment() -> FastAPI:
    """Build the app from ``USAGELEDGER_*`` settings (called by uvicorn in each worker)."""
    return create_app(load_settings())
