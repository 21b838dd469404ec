"""Who may call each route: the declared table that tests/test_routes.py checks against the application's
real routes (HTTP and WebSocket), so a new route without an entry fails the test suite.

    public     anyone (pages, health, Rasa's parse and REST webhook: rate-limited per sender and per IP)
    api        `Authorization: Bearer <security.api_token>`, or a supervisor's/admin's session
    metrics    `Authorization: Bearer <security.metrics_token>` or the API token (Prometheus; no session, no
               personal data in the answer); closed while neither is configured
    session    any session of the desk's login, trainers' included (logout)
    agent      an agent desk session (`Authorization: Bearer`, or the socket's first frame); not a trainer's
    supervisor a supervisor's or admin's session
    admin      an admin's session
    trainer    a trainer's or an admin's session (the trainer's workbench)
    trainer_or_api  a trainer's or an admin's session, or `security.api_token` (Rasa's model API)
    ops        a supervisor's, an admin's or a manager's session (the operations dashboard, /api/ops/*)
    customer   the app's signed customer token (`Authorization: Bearer`, or the socket's first frame)
    visitor    the widget's visitor credential, issued by the server in the socket's first answer
    wechat     WeChat's signature of the request (token, timestamp, nonce)
    wecom      WeCom's msg_signature of the encrypted callback
    system     `X-API-Key` of the bank's internal systems (`notify.api_keys`)
"""

from __future__ import annotations

from typing import Literal

Access = Literal["public", "api", "metrics", "session", "agent", "supervisor", "admin", "trainer", "trainer_or_api",
                 "ops", "customer", "visitor", "wechat", "wecom", "system"]

ROUTES: dict[tuple[str, str], Access] = {
    # operations and Rasa's HTTP API
    ("GET", "/health"): "public",
    ("GET", "/ready"): "public",
    ("GET", "/metrics"): "metrics",  # Prometheus: security.metrics_token (or the API token); counts only
    ("GET", "/status"): "public",
    ("POST", "/model/parse"): "public",
    ("POST", "/webhooks/rest/webhook"): "public",
    ("GET", "/conversations/{conversation_id}/tracker"): "api",
    ("GET", "/openapi.json"): "public",  # server.docs: false removes these two
    ("GET", "/docs"): "public",
    ("GET", "/docs/{asset}"): "public",
    # the web widget
    ("GET", "/"): "public",
    ("GET", "/favicon.ico"): "public",
    ("GET", "/widget.js"): "public",
    ("GET", "/widget.css"): "public",
    ("GET", "/demo.{kind}"): "public",
    ("WS", "/ws/chat"): "visitor",
    ("GET", "/widget/transcript"): "visitor",  # the credential as Authorization: Bearer
    # the agent desk
    ("GET", "/agent"): "public",
    ("GET", "/agent.js"): "public",
    ("GET", "/agent.css"): "public",
    ("GET", "/console.js"): "public",  # the helpers the desk's, the trainer's and /ops's pages share
    ("GET", "/console.css"): "public",  # the look the trainer's and /ops's pages share
    ("POST", "/api/agent/login"): "public",  # limited per account and per IP
    ("POST", "/api/agent/logout"): "session",
    ("POST", "/api/agent/presence"): "agent",
    ("GET", "/api/agent/queue"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/accept"): "agent",
    ("GET", "/api/agent/handoffs/{handoff_id}/context"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/messages"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/messages/{seq}/retry"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/messages/{seq}/callback"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/notes"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/transfer"): "agent",
    ("POST", "/api/agent/handoffs/{handoff_id}/close"): "agent",
    ("GET", "/api/agent/canned"): "agent",
    ("GET", "/api/agent/groups"): "agent",
    ("GET", "/api/agent/colleagues"): "agent",
    ("GET", "/api/agent/meta"): "agent",
    ("GET", "/api/agent/knowledge"): "agent",
    # the agent desk's library (bot/web/desk_library_api.py): past conversations, labels, canned replies
    ("GET", "/agent-library.js"): "public",
    ("GET", "/agent-library.css"): "public",
    ("GET", "/api/agent/conversations"): "agent",
    ("GET", "/api/agent/conversations/{conversation_id}"): "agent",
    ("PUT", "/api/agent/conversations/{conversation_id}/labels/{label}"): "agent",
    ("DELETE", "/api/agent/conversations/{conversation_id}/labels/{label}"): "agent",
    ("GET", "/api/agent/labels"): "agent",
    ("GET", "/api/agent/canned-replies"): "agent",
    ("POST", "/api/agent/canned-replies"): "agent",
    ("PUT", "/api/agent/canned-replies/{reply_id}"): "agent",
    ("DELETE", "/api/agent/canned-replies/{reply_id}"): "agent",
    ("WS", "/api/agent/ws"): "agent",
    ("GET", "/api/agent/attachments/{attachment_id}"): "agent",  # also only agents who may see the chat
    ("GET", "/api/supervisor/overview"): "supervisor",
    ("POST", "/api/supervisor/handoffs/{handoff_id}/reassign"): "supervisor",
    ("GET", "/api/admin/agents"): "supervisor",
    ("POST", "/api/admin/agents"): "admin",
    # the trainer's workbench: the page (bot/web/trainer_api.py) and the review inbox
    ("GET", "/trainer"): "public",
    ("GET", "/trainer.js"): "public",
    ("GET", "/trainer.css"): "public",
    ("GET", "/api/trainer/inbox"): "trainer",
    ("POST", "/api/trainer/inbox/dismiss"): "trainer",
    # the trainer's workbench: editing the training data and knowledge base (bot/web/trainer_edit_api.py)
    ("GET", "/api/trainer/data"): "trainer",
    ("POST", "/api/trainer/fixes"): "trainer",
    ("POST", "/api/trainer/findings"): "trainer",
    ("POST", "/api/trainer/suggestions"): "trainer",
    ("PUT", "/api/trainer/intents/{name}"): "trainer",
    ("PUT", "/api/trainer/responses/{name}"): "trainer",
    ("PUT", "/api/trainer/synonyms/{name}"): "trainer",
    ("PUT", "/api/trainer/lookups/{name}"): "trainer",
    ("PUT", "/api/trainer/regexes/{name}"): "trainer",
    ("PUT", "/api/trainer/entries/{entry_id}"): "trainer",
    # model versions (bot/web/model_api.py): the workbench, and Rasa's model API for tooling
    ("POST", "/api/trainer/models"): "trainer",
    ("GET", "/api/trainer/models"): "trainer",
    ("GET", "/api/trainer/models/{version}/comparison"): "trainer",
    ("POST", "/api/trainer/models/{version}/comparison"): "trainer",
    ("PUT", "/api/trainer/models/active"): "trainer",
    ("PUT", "/api/trainer/models/{version}/experiment"): "trainer",
    ("POST", "/api/trainer/conversations/{conversation_id}/test"): "trainer",
    ("POST", "/model/train"): "trainer_or_api",
    ("PUT", "/model"): "trainer_or_api",
    # the operations dashboard's page (bot/web/ops_page.py): its data is /api/ops/*, which needs a session
    ("GET", "/ops"): "public",
    ("GET", "/ops.js"): "public",
    ("GET", "/ops.css"): "public",
    ("GET", "/vendor/chart.umd.min.js"): "public",  # Chart.js, vendored with its licence
    # the bank's app
    ("POST", "/channels/app/messages"): "customer",
    ("POST", "/channels/app/binding-code"): "customer",
    ("POST", "/channels/app/attachments"): "customer",
    ("GET", "/channels/app/history"): "customer",
    ("GET", "/channels/app/transcript"): "customer",
    ("WS", "/channels/app/ws"): "customer",
    # WeChat, WeCom, the bank's systems
    ("GET", "/channels/wechat"): "wechat",
    ("POST", "/channels/wechat"): "wechat",
    ("GET", "/channels/wecom"): "wecom",
    ("POST", "/channels/wecom"): "wecom",
    ("POST", "/api/v1/notify"): "system",
    # the operations figures (bot/web/ops_api.py; definitions in bot/ops/kpis.py)
    ("GET", "/api/ops/kpis"): "ops",
    ("GET", "/api/ops/breakdown"): "ops",
    ("GET", "/api/ops/conversations"): "ops",
    ("GET", "/api/ops/export.csv"): "ops",
    ("GET", "/api/ops/live"): "ops",
    # quality inspection, 质检 (bot/web/quality_api.py; the rules in bot/ops/quality.py)
    ("GET", "/api/ops/quality/hits"): "ops",
    ("POST", "/api/ops/quality/hits/{hit_id}/review"): "ops",
    ("GET", "/api/ops/quality/scorecards"): "ops",
    ("GET", "/api/ops/quality/rules"): "ops",
    ("GET", "/api/ops/quality/chats/{handoff_id}"): "ops",
}
