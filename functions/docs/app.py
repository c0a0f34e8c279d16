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

from agentplane.http import create_app, lambda_entry

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.json"
SWAGGER_UI_VERSION = "5.17.14"
SWAGGER_UI_CDN = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
SWAGGER_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>agentplane API</title>
  <link rel="stylesheet" href="{SWAGGER_UI_CDN}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_UI_CDN}/swagger-ui-bundle.js" crossorigin="anonymous"></script>
  <script>
    window.onload = () => {{
      window.ui = SwaggerUIBundle({{
        url: "/api/openapi.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: true,
      }});
    }};
  </script>
</body>
</html>
"""
# Deployed documents change only with a deployment; a few minutes of caching is safe.
CACHE_CONTROL = "public, max-age=300"

app = create_app()


@cache
def openapi_document() -> str:
    return OPENAPI_FILE.read_text()


@app.get("/api/openapi.json", include_in_schema=False)
def get_openapi() -> Response[Any]:
    return Response(
        status_code=200,
        content_type="application/json",
        body=openapi_document(),
        headers={"Cache-Control": CACHE_CONTROL},
    )


@app.get("/api/docs", include_in_schema=False)
def get_swagger_ui() -> Response[Any]:
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=SWAGGER_PAGE,
        headers={"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
    )


lambda_handler = lambda_entry(app)
