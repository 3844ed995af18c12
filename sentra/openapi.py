"""The OpenAPI 3.1 description of Sentra's HTTP API."""

from __future__ import annotations

from typing import Any

from sentra import __version__


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document served at /api/openapi.json."""
    return {"openapi": "3.1.0", "info": {"title": "Sentra", "version": __version__}, "paths": {}}
