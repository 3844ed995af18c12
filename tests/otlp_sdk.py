"""The official OpenTelemetry SDK as the agent: a Python `logging` logger whose records the SDK's LoggingHandler gives
to the OTLP/HTTP exporter, built locally (no global provider) and shut down after, against any Sentra a test
starts."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Tracer, TracerProvider

T = TypeVar("T")


def log_with_sdk(
    url: str,
    token: str,
    resource: dict[str, Any],
    actions: Callable[[logging.Logger, Tracer], T],
    *,
    compression: Compression | None = None,
    batch: bool = False,
    exporter: OTLPLogExporter | None = None,
) -> T:
    """Run `actions` with a Python logger whose records the SDK's LoggingHandler gives to the OTLP/HTTP exporter,
    and a tracer; then shut the SDK down, which sends what it still holds. Blocking: call it in a thread."""
    provider = LoggerProvider(resource=Resource.create(resource), shutdown_on_exit=False)
    exporter = exporter or OTLPLogExporter(
        endpoint=f"{url}/v1/logs", headers={"Authorization": f"Bearer {token}"}, compression=compression, timeout=10
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter) if batch else SimpleLogRecordProcessor(exporter)
    )
    with warnings.catch_warnings():
        # The SDK's own handler says it will move to opentelemetry-instrumentation-logging; it is still the SDK's.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    tracing = TracerProvider(shutdown_on_exit=False)
    logger = logging.getLogger("agent.planner")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        return actions(logger, tracing.get_tracer("agent"))
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        provider.shutdown()
        tracing.shutdown()
