"""Prometheus metrics of every litetasks backend, read from the queue file at each scrape.

Install ``litetasks[metrics]`` (``prometheus_client``), then either mount the view::

    # urls.py
    import litetasks.metrics
    urlpatterns = [..., path("metrics/", litetasks.metrics.view)]

(active staff users, or a scraper sending ``Authorization: Bearer <token>`` where the token is
a backend's ``OPTIONS["metrics_token"]``), or run ``litetasks metrics --port 9808``. The
numbers come from the queue file, so they are the same whichever process serves them: no
multiprocess mode, nothing kept in memory. ``Collector`` and ``registry()`` are for sites
that serve metrics their own way.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ._django.metrics import Collector, metrics_tokens, registry, render

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

__all__ = ["Collector", "registry", "render", "view"]


def view(request: HttpRequest) -> HttpResponse:
    """The metrics, for active staff users or a bearer of a backend's ``metrics_token``."""
    from django.http import HttpResponse

    if not (_is_staff(request) or _has_token(request)):
        response = HttpResponse("Forbidden: staff login or a metrics bearer token.\n", status=403)
        response["WWW-Authenticate"] = 'Bearer realm="litetasks metrics"'
        return response
    body, content_type = render()
    return HttpResponse(body, content_type=content_type)


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _has_token(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return any(
        hmac.compare_digest(given.strip().encode(), token.encode()) for token in metrics_tokens()
    )
