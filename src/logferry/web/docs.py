"""``/docs`` with the vendored Swagger UI and the packaged static files, so it works offline."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the package's ``static`` directory is served.
STATIC_URL = "/static"
STATIC_DIR = Path(__file__).parent / "static"
_SWAGGER = STATIC_URL + "/vendor/swagger-ui"


def mount_docs(app: FastAPI) -> None:
    """Serve ``static/`` and Swagger UI at ``/docs`` from it (create the app with ``docs_url=None``)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API docs",
            swagger_js_url=root + _SWAGGER + "/swagger-ui-bundle.js",
            swagger_css_url=root + _SWAGGER + "/swagger-ui.css",
            swagger_favicon_url=root + _SWAGGER + "/favicon-32x32.png",
        )
