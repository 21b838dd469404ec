"""The FastAPI application, built by a factory so tests choose the config and the model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from bot.agent import Agent
from bot.config import BotConfig
from bot.web.schemas import ParseRequest, RestButton, RestMessage, RestReply, Status


def create_app(config: BotConfig, agent: Agent | None = None) -> FastAPI:
    app = FastAPI(title="示例银行智能客服 API", version="0.1.0",
                  description="Rasa-compatible NLU and REST channel of the bank's self-service bot.")
    app.state.agent = agent or Agent.load(config)
    app.state.config = config
    _routes(app)
    return app


def _agent(request: Request) -> Agent:
    return request.app.state.agent


AgentDep = Annotated[Agent, Depends(_agent)]


def _routes(app: FastAPI) -> None:
    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    def ready(agent: AgentDep) -> dict[str, str]:
        return {"status": "ready", "model": agent.version}

    @app.get("/status", response_model=Status, tags=["rasa"])
    def status(agent: AgentDep) -> Status:
        metadata = agent.model.metadata
        return Status(model_version=agent.version, model_file=f"models/{agent.version}",
                      intents=len(metadata.get("intents", [])),
                      knowledge_entries=int(metadata.get("n_knowledge_entries", 0)),
                      encoder=str(metadata.get("encoder")), metadata=metadata)

    @app.post("/model/parse", tags=["rasa"])
    def parse(body: ParseRequest, agent: AgentDep) -> dict[str, Any]:
        """Rasa's parse format: text, intent, intent_ranking, entities, plus the knowledge retrieval."""
        return dict(agent.parse(body.text))

    @app.post("/webhooks/rest/webhook", response_model=list[RestReply], response_model_exclude_none=True,
              tags=["rasa"])
    def rest_webhook(body: RestMessage, agent: AgentDep) -> list[RestReply]:
        """Rasa's REST channel: one customer message in, the bot's messages out."""
        _, replies = agent.handle(body.message, body.channel)
        return [RestReply(recipient_id=body.sender, text=r.text,
                          buttons=[RestButton(**b.model_dump()) for b in r.buttons] or None) for r in replies]
