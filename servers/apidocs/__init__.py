"""The API reference at `/docs`: Swagger UI served by this server, from the copy of
swagger-ui-dist the `fastapi-swagger` package keeps current, so it works without the internet
and under the same strict Content-Security-Policy as the portal (FastAPI's own page loads it from
a CDN and starts it with an inline script, both of which that policy refuses)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["mount"]

HERE = Path(__file__).resolve().parent
# An installed package's resources are files on disk (a wheel unpacked in site-packages).
SWAGGER = Path(str(resources.files("fastapi_swagger.resources")))

# Swagger UI writes the `style` of a few elements through the DOM (allowed under `style-src
# 'self'`) and shows images as data: URLs; the requests it sends ("Try it out") go to this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""


def mount(app: FastAPI) -> None:
    """`/docs` (the page), `/docs/start.js` (what starts it) and `/docs/assets/...` (Swagger UI)."""
    page = PAGE.format(title=app.title).encode()
    start = (HERE / "start.js").read_bytes()

    async def docs(request: Request) -> Response:
        return HTMLResponse(page, headers=HEADERS)

    async def start_js(request: Request) -> Response:
        return Response(start, media_type="text/javascript", headers=HEADERS)

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route("/docs/start.js", start_js, include_in_schema=False)
    app.mount("/docs/assets", StaticFiles(directory=SWAGGER), name="docs-assets")
