"""The API's own documentation: the OpenAPI document and a Swagger UI page.

openapi.json is generated at build time from every function's resolver (`make openapi`), so this
function serves a file and imports none of the others. It touches no AWS service either, so it
skips agentplane.http (which loads boto3 for the store) and renders its rare failures with the
same problem documents through agentplane.errors.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from agentplane.errors import AppError, NotFound

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

PROBLEM_JSON = "application/problem+json"

app = APIGatewayHttpResolver()


def _problem(error: AppError) -> Response[str]:
    return Response(
        status_code=error.status,
        content_type=PROBLEM_JSON,
        body=json.dumps(error.to_problem(app.current_event.path)),
    )


@app.not_found
def _no_route(exc: NotFoundError) -> Response[str]:
    return _problem(NotFound("no such route"))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[str]:
    return _problem(AppError("an unexpected error occurred"))


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


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
