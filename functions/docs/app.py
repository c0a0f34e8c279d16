"""The API's own documentation: the OpenAPI document and a Swagger UI page.

openapi.json is generated at build time from every function's resolver (`make openapi`), so this
function serves a file and imports none of the others. Like every function it answers through
agentplane.http: its calls are rate limited by source IP (with the X-RateLimit-* headers), and its
rare failures are the same problem documents.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response

from agentplane.errors import NotFound
from agentplane.http import PUBLIC, create_app, lambda_entry

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.json"
# Swagger UI is served from this function (npm swagger-ui-dist 5.17.14, its LICENSE beside it,
# source-map comments removed), so the page works offline and without a third-party CDN.
SWAGGER_UI_DIR = Path(__file__).resolve().parent / "swagger-ui"
SWAGGER_UI_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>agentplane API</title>
  <link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/swagger-ui-bundle.js"></script>
  <script>
    window.onload = () => {
      window.ui = SwaggerUIBundle({
        url: "/api/openapi.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: true,
      });
    };
  </script>
</body>
</html>
"""
# Deployed documents change only with a deployment; a few minutes of caching is safe.
CACHE_CONTROL = "public, max-age=300"

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)


@cache
def openapi_document() -> str:
    return OPENAPI_FILE.read_text()


@app.get("/api/openapi.json", include_in_schema=False, security=PUBLIC)
def get_openapi() -> Response[Any]:
    return Response(
        status_code=200,
        content_type="application/json",
        body=openapi_document(),
        headers={"Cache-Control": CACHE_CONTROL},
    )


@app.get("/api/docs", include_in_schema=False, security=PUBLIC)
def get_swagger_ui() -> Response[Any]:
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=SWAGGER_PAGE,
        headers={"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
    )


@cache
def swagger_asset(name: str) -> str:
    return (SWAGGER_UI_DIR / name).read_text()


@app.get("/api/docs/<asset>", include_in_schema=False, security=PUBLIC)
def get_swagger_asset(asset: str) -> Response[Any]:
    content_type = SWAGGER_UI_ASSETS.get(asset)
    if content_type is None:
        raise NotFound(f"no documentation asset is named {asset!r}")
    return Response(
        status_code=200,
        content_type=content_type,
        body=swagger_asset(asset),
        headers={"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
    )


lambda_handler = lambda_entry(app)
