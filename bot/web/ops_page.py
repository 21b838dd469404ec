"""The operations dashboard's page at /ops: its HTML, script and style, and the charting library it draws with
(Chart.js 4, vendored in bot/web/static/vendor with its licence: nothing is fetched from a CDN). All public: they
hold no data. The figures come from /api/ops/* (bot/web/ops_api.py, bot/web/quality_api.py), which need a
supervisor's, an admin's or a manager's session of the desk's login; the page's script sends it."""

from __future__ import annotations

from fastapi import APIRouter

from bot.web.agent_api import static_files

# the page's own files; /console.js (the login, the API client) is served with the desk's (bot/web/agent_api.py)
PAGE_FILES = {
    "/ops": "ops.html",
    "/ops.js": "ops.js",
    "/ops.css": "ops.css",
    "/vendor/chart.umd.min.js": "vendor/chart.umd.min.js",  # Chart.js 4.6.1, MIT: vendor/chart.js.LICENSE.md
}


def ops_page_router() -> APIRouter:
    return static_files(PAGE_FILES)
