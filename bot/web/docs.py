"""The API documentation page at /docs: Swagger UI from the `swagger-ui-bundle-v2` package, never a CDN, and
started by a file of ours rather than an inline script, so the page keeps the strict CSP."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

STATIC = Path(__file__).parent / "static"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
  <meta charset="utf-8">
  <title>示例银行智能客服 API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/start.js"></script>
</body>
</html>
"""


def docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @router.get("/docs/{asset}")
    def asset(asset: str) -> FileResponse:
        if asset == "start.js":
            return FileResponse(STATIC / "docs-start.js", media_type="text/javascript; charset=utf-8")
        if asset not in ASSETS:
            raise HTTPException(status_code=404, detail="no such file")
        return FileResponse(Path(str(swagger_ui_path)) / asset, media_type=f"{ASSETS[asset]}; charset=utf-8")

    return router
