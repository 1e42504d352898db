"""The uvicorn factory: ``usageledger.api.factory:app_from_environment``."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from usageledger.api.app import create_app
from usageledger.config import load_settings


def app_from_environment() -> FastAPI:
    """Build the app from ``USAGELEDGER_*`` settings (called by uvicorn in each worker)."""
    app = create_app(load_settings())
    # Everything built so far (modules, the app, the schemas) lives as long as the process.
    # Freezing it keeps the collector from walking it again on every full collection, which
    # a batch of 500 buckets (a few thousand short-lived objects) otherwise triggers often:
    # validating one took 3.2 ms with the app's heap walked, 2.2 ms with it frozen.
    gc.collect()
    gc.freeze()
    return app
