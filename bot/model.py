"""Train, save and load a model: a versioned directory `models/<timestamp>/` holding everything learned.

A model directory is self-contained: the classifier, the knowledge index and a copy of the training data
(responses, rules, lookups) it was trained on, plus the dialogue policies (policies.json) when the project has
stories or configures `policies:`. The dense encoder is referenced by name, never copied.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from bot.config import BotConfig
from bot.dialogue.policies import (
    DomainError,
    InvalidRulesError,
    PolicyConfigError,
    PolicyEnsemble,
    StoryError,
)
from bot.dialogue.policies.ensemble import MODEL_FILE as POLICIES_FILE
from bot.nlu.classifier import ClassifierOptions, IntentClassifier
from bot.nlu.normalise import NormaliserOptions
from bot.nlu.pipeline import NLUPipeline
from bot.nlu.rule_entities import RuleEntityExtractor, entity_phrases
from bot.nlu.tokenise import Tokenizer
from bot.retrieval.encoders import BatchingEncoder, Encoder, load_encoder
from bot.retrieval.knowledge import KnowledgeEntry, load_knowledge
from bot.retrieval.retriever import KnowledgeRetriever
from bot.training_data import DisplayNames, TrainingData, TrainingDataError, load_training_data

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
Progress = Callable[[str], None]


@dataclass
class TrainedModel:
    nlu: NLUPipeline
    retriever: KnowledgeRetriever | None
    data: TrainingData
    metadata: dict[str, Any] = field(default_factory=dict)
    policies: PolicyEnsemble | None = None  # None: rules and the answering policy alone decide (the bundled bot)

    @property
    def display_names(self) -> DisplayNames:
        """How agents read this model's intents, slots and forms (`display_name` in nlu_data, kept in
        metadata.json); a model trained before display names has none."""
        return DisplayNames.from_json(self.metadata.get("display_names"))


def build_nlu(config: BotConfig, data: TrainingData, encoder: Encoder | None,
              classifier: IntentClassifier | None = None) -> NLUPipeline:
    """The pipeline described by `config`, with a fitted classifier if given, else an unfitted one."""
    normaliser_step = config.step("normalizer")
    normaliser = NormaliserOptions(**normaliser_step.model_dump(exclude={"name"})) if normaliser_step else \
        NormaliserOptions(False, False, False, False, False, True)
    phrases = entity_phrases(data)
    tokenizer_step = config.step("jieba_tokenizer")
    user_dict = config.path(tokenizer_step.user_dict) if tokenizer_step and tokenizer_step.user_dict else None
    tokenizer = Tokenizer(user_dict, extra_words=[w for values in phrases.values() for w in values])
    rules_step = config.step("rule_entities")
    rule_entities = None
    if rules_step:
        from bot.nlu.normalise import fold

        rule_entities = RuleEntityExtractor(
            {k: sorted(v) for k, v in phrases.items()} if rules_step.use_lookups else {},
            data.regexes if rules_step.use_regexes else {},
            data.synonyms if rules_step.use_synonyms else {},
            lambda t: fold(t, normaliser))
    builtin = config.step("builtin_entities")
    step = config.step("intent_classifier")
    options = ClassifierOptions(char_ngram_range=tuple(step.char_ngram_range), word_features=step.word_features,
                                sentence_encoder=step.sentence_encoder, encoder_weight=step.encoder_weight, C=step.C)
    return NLUPipeline(normaliser=normaliser, tokenizer=tokenizer, classifier=classifier or IntentClassifier(options),
                       rule_entities=rule_entities, builtin_dimensions=list(builtin.dimensions) if builtin else [],
                       fallback_threshold=step.fallback_threshold, ranking_length=step.ranking_length,
                       encoder=encoder, min_support=step.min_support)


def fit_classifier(nlu: NLUPipeline, texts: list[str], labels: list[str]) -> None:
    prepared = [nlu.prepare(t) for t in texts]
    normalised = [p[0] for p in prepared]
    nlu.classifier.fit(normalised, [p[1] for p in prepared], labels, nlu.encoder)


def build_retriever(config: BotConfig, nlu: NLUPipeline, entries: list[KnowledgeEntry]) -> KnowledgeRetriever | None:
    if not entries:
        return None
    r = config.retrieval
    encoder = nlu.encoder
    return KnowledgeRetriever.build(
        entries, nlu.prepare, (lambda texts: encoder.encode(texts)) if encoder else (lambda texts: None),
        rrf_k=r.rrf_k, answer_threshold=r.answer_threshold, clarify_threshold=r.clarify_threshold,
        decisive_margin=r.decisive_margin, candidates=r.candidates)


def train(config: BotConfig, progress: Progress = lambda step: None, *, version: str | None = None,
          trained_by: str | None = None) -> Path:
    """Train on the config's nlu_data and knowledge, write models/<version>/ and return its path. `version`
    (default: a new timestamp) is chosen by the caller when it records the version before training ends (the
    model registry); `trained_by` is kept in metadata.json."""
    started = time.perf_counter()
    progress("读取训练数据 loading training data")
    data = load_training_data(config.path(config.nlu_data))
    knowledge_dir = config.path(config.retrieval.knowledge)
    entries = load_knowledge(knowledge_dir) if knowledge_dir.exists() else []
    progress("加载向量模型 loading encoder")
    encoder = load_encoder(config.retrieval.encoder, str(config.root))
    nlu = build_nlu(config, data, encoder)
    progress(f"训练意图分类器 training intent classifier ({len(data.examples)} examples)")
    fit_classifier(nlu, [e.text for e in data.examples], [e.intent for e in data.examples])
    progress(f"构建知识库索引 indexing knowledge base ({len(entries)} entries)")
    retriever = build_retriever(config, nlu, entries)
    policies = None
    if uses_policies(config, data):
        progress(f"训练对话策略 training dialogue policies ({len(data.stories)} stories, {len(data.rules)} rules)")
        policies = train_policies(config, data)
    metadata = {
        "version": version or new_version(),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "encoder": config.retrieval.encoder,
        "intents": data.intents,
        "n_examples": len(data.examples),
        "display_names": data.display_names.to_json(),
        "n_knowledge_entries": len(entries),
        "train_seconds": round(time.perf_counter() - started, 2),
        "data_fingerprint": data_fingerprint(config),
        **({"trained_by": trained_by} if trained_by else {}),
    }
    if policies is not None:
        metadata.update(n_stories=len(data.stories), policies=[p.name for p in policies.policies],
                        policy_notes=policies.notes)
    progress("保存模型 saving model")
    return save(TrainedModel(nlu, retriever, data, metadata, policies), config.path(config.models_dir))


def new_version() -> str:
    """A model directory's name: its local training time, sortable."""
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def uses_policies(config: BotConfig, data: TrainingData) -> bool:
    """Stories, or a `policies:` list, make the next actions come from trained policies (Rasa's way); without
    them rules are looked up directly (the bundled bot)."""
    return bool(data.stories) or bool(config.policies)


def train_policies(config: BotConfig, data: TrainingData) -> PolicyEnsemble:
    """The policy ensemble over the stories and rules; their errors as training data errors (file and step)."""
    try:
        return PolicyEnsemble.train(data.stories, data.rules, data.as_rasa_domain(), config.policies or None)
    except (StoryError, InvalidRulesError, DomainError, PolicyConfigError) as e:
        raise TrainingDataError(str(e)) from e


GENERATED_FOLDERS = frozenset({"__pycache__", "results", "models"})


def data_fingerprint(config: BotConfig) -> str:
    """SHA-256 over everything a model is trained from: nlu_data/, knowledge/ and the config's NLU settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"pipeline": [s.model_dump() for s in config.pipeline],
                              "retrieval": config.retrieval.model_dump(include={"encoder", "rrf_k"}),
                              # only when set, so that models trained without policies stay current
                              **({"policies": config.policies} if config.policies else {})},
                             sort_keys=True, default=str).encode())
    generated = config.path(config.models_dir).resolve()
    for folder in (config.path(config.nlu_data), config.path(config.retrieval.knowledge)):
        for file in sorted(folder.rglob("*")) if folder.exists() else []:
            if file.is_file() and not _generated(file.relative_to(folder), file, generated):
                digest.update(str(file.relative_to(folder)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def _generated(relative: Path, file: Path, models_dir: Path) -> bool:
    """Written by the bot, not by its trainers: models, databases and caches. A Rasa project's data folder is the
    project root, which holds them too."""
    return any(part.startswith(".") or part in GENERATED_FOLDERS for part in relative.parts[:-1]) \
        or file.resolve().is_relative_to(models_dir)


def is_stale(directory: Path, config: BotConfig) -> bool:
    """True when the training data or NLU config changed since the model in `directory` was trained."""
    metadata = json.loads((directory / METADATA_FILE).read_text("utf-8"))
    return metadata.get("data_fingerprint") != data_fingerprint(config)


def save(model: TrainedModel, models_dir: Path) -> Path:
    directory = models_dir / model.metadata["version"]
    directory.mkdir(parents=True, exist_ok=False)
    joblib.dump({"classifier": model.nlu.classifier, "retriever": model.retriever, "data": model.data},
                directory / MODEL_FILE, compress=3)
    (directory / METADATA_FILE).write_text(json.dumps(model.metadata, ensure_ascii=False, indent=2), "utf-8")
    if model.policies is not None:
        model.policies.save(directory)
    return directory


def latest_model_dir(config: BotConfig) -> Path | None:
    models_dir = config.path(config.models_dir)
    candidates = sorted(p for p in models_dir.glob("*") if (p / MODEL_FILE).exists()) if models_dir.exists() else []
    return candidates[-1] if candidates else None


def load(directory: Path, config: BotConfig) -> TrainedModel:
    """Load a trained model; the pipeline's non-learned parts (normaliser, tokeniser, rules) come from config."""
    if not (directory / MODEL_FILE).exists():
        raise FileNotFoundError(f"{directory}: not a model directory (no {MODEL_FILE}); run `bot train`")
    metadata = json.loads((directory / METADATA_FILE).read_text("utf-8"))
    if metadata.get("encoder") != config.retrieval.encoder:
        raise ValueError(f"{directory} was trained with encoder {metadata.get('encoder')!r} but config.yml "
                         f"says {config.retrieval.encoder!r}; run `bot train` again")
    stored = joblib.load(directory / MODEL_FILE)
    encoder = load_encoder(config.retrieval.encoder, str(config.root))
    if encoder is not None:  # served: the messages of concurrent turns are encoded together
        encoder = BatchingEncoder(encoder)
    nlu = build_nlu(config, stored["data"], encoder, classifier=stored["classifier"])
    policies = PolicyEnsemble.load(directory) if (directory / POLICIES_FILE).exists() else None
    return TrainedModel(nlu, stored["retriever"], stored["data"], metadata, policies)
