"""OpenTelemetry tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set: a span per request and query.

Started in each worker after the fork, as errors.py explains: the exporter's
batch thread would not survive it. Spans go over OTLP/HTTP (protobuf) to
OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://collector:4318); the SDK reads its other
OTEL_* variables itself (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, ...). Django
requests and the database driver's queries are instrumented.

The packages are optional, in the project's `tracing` extra (`pip install
-e '.[tracing]'`; the dev extra includes it): without them, a set endpoint stops
start-up with one line.

The presets import Django, and build its middleware chain, in the master:
Django's instrumentor adds its middleware to the settings, so each worker
rebuilds the chain of the application it serves once tracing is on
(`instrument_application`).
"""

from importlib.util import find_spec

PACKAGES = {
    "opentelemetry.sdk": "opentelemetry-sdk",
    "opentelemetry.exporter.otlp.proto.http": "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry.instrumentation.django": "opentelemetry-instrumentation-django",
    # Without it Django's instrumentation traces no request under the asgi preset.
    "opentelemetry.instrumentation.asgi": "opentelemetry-instrumentation-asgi",
}
DRIVERS = {
    "psycopg": ("opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor"),
    "psycopg2": ("opentelemetry.instrumentation.psycopg2", "Psycopg2Instrumentor"),
}
provider = None


def installed(module):
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def problem():
    """One line if the endpoint is set but a package it needs is missing, else None."""
    missing = [package for module, package in PACKAGES.items() if not installed(module)]
    if missing:
        return (
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install -e '.[tracing]'"
        )
    return None


def start():
    global provider
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    for driver, (module, name) in DRIVERS.items():
        if installed(driver) and installed(module):
            instrumentor = getattr(__import__(module, fromlist=[name]), name)()
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(enable_commenter=False)


def instrument_application(application):
    """Rebuild the middleware chain of Django's handler, now that the settings name the tracer's."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.base import BaseHandler

    if isinstance(application, BaseHandler):
        application.load_middleware(is_async=isinstance(application, ASGIHandler))


def stop():
    if provider is not None:
        provider.shutdown()
