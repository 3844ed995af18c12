"""GET /healthz, GET /metrics and GET /api/openapi.json."""

from __future__ import annotations

import functools
import ipaddress
import json

from sentra.api.base import JSON_TYPE, ApiHandler
from sentra.api.openapi import openapi_document
from sentra.errors import Forbidden, ServiceUnavailable, Unauthorized

# What an agent needs to know to send lines Sentra takes: the Python client reads max_line_size from /healthz.
INGEST_LIMITS = ("max_line_size", "max_body_size", "max_lines_per_request")


class HealthHandler(ApiHandler):
    """Liveness and database check, and the ingest limits an agent splits and batches its lines by; no auth."""

    async def get(self) -> None:
        """200 {"status": "ok", "open_streams", "limits"} if the database answers, else 503."""
        try:
            await self.store.check()
        except Exception as exc:
            raise ServiceUnavailable(f"the database does not answer: {exc}", code="database_unavailable") from None
        limits = {name: self.config[f"limits.{name}"] for name in INGEST_LIMITS}
        self.write_json({"status": "ok", "open_streams": self.registry.open_streams, "limits": limits})


class MetricsHandler(ApiHandler):
    """Prometheus text format, for admin tokens or allow-listed addresses."""

    async def get(self) -> None:
        """The metrics, if the caller may see them."""
        if not self._address_allowed():
            try:
                allowed = self.principal.is_admin
            except Unauthorized:
                raise Unauthorized("metrics need an admin token or an address in server.metrics_allow") from None
            if not allowed:
                raise Forbidden("metrics need an admin token or an address in server.metrics_allow")
        count, size = await self.store.attachments.totals()
        self.metrics.attachments.set(count)
        self.metrics.attachment_bytes.set(size)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.end(self.metrics.render())

    def _address_allowed(self) -> bool:
        remote = self.remote_ip
        for entry in self.config["server.metrics_allow"]:
            try:
                if ipaddress.ip_address(remote) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


class OpenAPIHandler(ApiHandler):
    """The OpenAPI 3.1 description of this API."""

    def get(self) -> None:
        """The document, as JSON."""
        self.set_header("Content-Type", JSON_TYPE)
        self.end(_openapi_json())


@functools.cache
def _openapi_json() -> bytes:
    """The document never changes while the server runs: encode it once."""
    return json.dumps(openapi_document()).encode()
