"""``litetasks metrics --port N``: serve the Prometheus metrics of litetasks.metrics on a port,
for sites that scrape a port rather than a URL of the Django site.

Imported by commands.py, whose ``app`` this command joins.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import typer

from ..exceptions import ConfigurationError, LiteTasksError
from .bootstrap import setup_django
from .commands import PythonPath, Settings, app

__all__ = ["metrics", "serve_metrics"]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per scrape is noise


@app.command(short_help="Serve Prometheus metrics on a port.")
def metrics(
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="The port to serve on.")
    ] = 9808,
    host: Annotated[
        str,
        typer.Option(metavar="HOST", help="The address to listen on (0.0.0.0: every interface)."),
    ] = "127.0.0.1",
    settings: Settings = None,
    pythonpath: PythonPath = None,
) -> None:
    """Serve Prometheus metrics of every litetasks backend at http://HOST:PORT/metrics."""
    try:
        setup_django(settings, pythonpath)
        server = serve_metrics(host, port)
    except LiteTasksError as exc:
        typer.echo(f"litetasks: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"litetasks: error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    # Ctrl-C and SIGTERM stop it (exit 0), also when started with SIGINT ignored (as `&` does).
    # A flag, not KeyboardInterrupt: wsgiref swallows an exception raised while it answers.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    typer.echo(f"Serving litetasks metrics at http://{host}:{server.server_port}/metrics", err=True)
    server.timeout = 0.2  # how soon a signal between scrapes is noticed
    with server:
        while not stop.is_set():
            server.handle_request()


def serve_metrics(host: str, port: int) -> WSGIServer:
    """A WSGI server of the metrics, bound but not serving yet. Raises ``ConfigurationError``
    without prometheus_client or without a litetasks backend."""
    from .._django.metrics import Collector, registry

    made = registry()  # first: says how to install prometheus_client
    if not Collector().backends():
        raise ConfigurationError(
            "No litetasks backend in settings.TASKS: there is nothing to measure. Add "
            'TASKS = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend"}}.'
        )
    from prometheus_client import make_wsgi_app

    return make_server(host, port, make_wsgi_app(made), handler_class=_QuietHandler)
