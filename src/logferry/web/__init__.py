"""The web dashboard of ``logferry serve`` and the API docs, served with no CDN.

Pages are rendered on the server (Jinja2, autoescaped); charts use the vendored Chart.js
and Swagger UI is the vendored ``swagger-ui-dist``, both under ``static/vendor`` with their
licences. :func:`mount_docs` serves ``/docs`` from them; :func:`mount_dashboard` adds the
pages under ``/dashboard``.
"""

from __future__ import annotations

from logferry.web.dashboard import DashboardSettings, mount_dashboard
from logferry.web.docs import STATIC_URL, mount_docs

__all__ = ["STATIC_URL", "DashboardSettings", "mount_dashboard", "mount_docs"]
