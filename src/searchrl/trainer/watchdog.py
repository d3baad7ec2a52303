"""The collapse watchdog (``train.watchdog``): checks every RL step's metrics and rolls back on a trip.

After each step :meth:`Watchdog.after_step` compares the step's metrics with smoothed baselines of the
steps that passed (:func:`find_trip`: a few float comparisons per step, nothing measurable beside a step).
The signals, each named in a ``watchdog/<signal>`` metric and in the error that stops a run:

* ``nonfinite``: a NaN or Inf in an ``actor/``, ``critic/`` or ``reward/`` metric, or a skipped optimizer
  step (``actor/skipped_steps`` > 0: the update met a non-finite loss or gradient, trainer/update.py);
* ``entropy_floor``, ``entropy_jump``: ``actor/entropy`` (when logged) below ``entropy_min``, or more than
  ``entropy_factor`` times above or below its baseline;
* ``kl_ceiling``: ``actor/kl`` (when logged: a KL term, or ``train.log_kl``) above ``kl_max``;
* ``length_jump``, ``truncated_jump``: ``rollout/response_tokens`` above ``length_factor`` times its
  baseline, or ``rollout/truncated`` more than ``truncated_rise`` above it (rises only: a runaway or
  repeating policy; shorter answers with a falling reward are caught by ``reward_drop``);
* ``invalid_jump``: ``rollout/invalid`` (turns per sample the protocol could not parse) more than
  ``invalid_rise`` above its baseline, from the first passed step on (no warmup): the tag protocol
  breaking down is not noise. The demonstration that added it (recipes/demonstrations/watchdog_collapse.yaml,
  lr 5e-3): one update turned every turn into ``<<<<…``; from then on every group's rewards were equal, so
  no row trained, ``actor/entropy`` and ``actor/kl`` were never logged, and the jump and reward checks
  were still in their warmup: nothing else could see it. Invalid turns went 0.06 -> 1.6 -> 4.0 per sample;
  healthy logged runs (F1-F3, 28 runs) rose at most 0.41 above their first step (max 0.5).
* ``reward_drop``: the smoothed ``reward/mean`` more than ``reward_drop`` below its running best.

On a trip: a ``watchdog/…`` record in metrics.jsonl at the tripped step and a console line; the last
checkpoint that passed is restored (weights, optimizer, RNG, step) and made ``latest``, the later ones
deleted; learning rates become ``lr_factor ** trips`` times the configured ones and, with ``kl_coef`` > 0,
a KL-to-the-start term enters the loss; the run continues. The trip that brings the count to
``max_trips`` does the same restore, then raises :class:`WatchdogError` naming the signal.

Choices:

* A checkpoint holds the weights *after* its step's update, and the next step's metrics (its rollouts,
  entropy, KL, loss) are the first to describe them. So ``ckpt-<s>`` passes only when step ``s + 1``
  passes; until then it is pending, and a trip never restores it. The checkpoint a run starts from passes
  by definition (``fit`` writes one if the run has none). The last passed checkpoint is never pruned.
* Baselines are moving averages (weight ``smoothing``; a plain mean over the first ``1 / smoothing``
  steps) of passed steps only. Jump checks start after ``warmup`` passed steps, the reward check after
  ``1 / smoothing``; its running best is of the smoothed value, so one lucky GRPO step cannot set it. A
  new ``reward/stage`` (a reward schedule) restarts the reward baseline: a new reward has its own scale.
* A rollback restores the baselines saved with that checkpoint, and keeps the data position: the prompts
  of the discarded steps are not replayed.
* The KL term enters through a copy of ``train`` with the higher ``kl_coef`` given to the update stage;
  config.yaml keeps what was asked for and ``watchdog/kl_coef`` what was applied. The reference is
  checkpoint 0's policy, or the restored policy when the run folder has no checkpoint 0.

Defaults, from the noise of logged runs: a 12-step F1 GRPO calibration run (4 prompts x 8 samples; its
values are in tests/test_trainer_watchdog.py) and the curves in docs/findings/*. The per-step
``reward/mean`` of a few prompts swings by up to 0.7 (0.72, 0.03, 0.66 on three steps; sd 0.20). In a
simulated stationary run with that noise (sd 0.25 for margin) and smoothing 0.05, the largest drop of the
smoothed reward below its running best over 1000 steps was 0.27 at the 95th percentile and 0.30 in the
worst of 200 runs: ``reward_drop`` is 0.3, and a collapse from 0.45 to 0 trips within about 20 steps.
Entropy moved 3.3x in one step (1.35 to 0.41) and went as low as 0.10 nats; response length rose 2.1x
in two steps (198 to 423 tokens): hence the factors 5 and 3 and a floor of 0.01 nats. Those runs did not
log KL: ``kl_max`` (1 nat per policy token) is set far above what a KL-regularized run drifts to, to be
recalibrated once runs log ``actor/kl``. Half the samples newly out of budget is a repetition loop.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from searchrl.config import WatchdogConfig
from searchrl.trainer.checkpoint import TrainState, checkpoint_dir, load_checkpoint, rewind
from searchrl.trainer.reference import Reference

if TYPE_CHECKING:
    from searchrl.trainer.loop import Trainer

__all__ = ["Baselines", "Trip", "Watchdog", "WatchdogError", "WatchdogState", "find_trip"]

Signal = Literal[
    "nonfinite",
    "entropy_floor",
    "entropy_jump",
    "kl_ceiling",
    "length_jump",
    "truncated_jump",
    "invalid_jump",
    "reward_drop",
]
REWARD = "reward/mean"
WATCHED = (
    "actor/entropy",
    "rollout/response_tokens",
    "rollout/truncated",
    "rollout/invalid",
    REWARD,
)  # the metrics with baselines
FINITE = ("actor/", "critic/", "reward/")  # namespaces whose every value must be finite


class WatchdogError(RuntimeError):
    """The watchdog tripped ``train.watchdog.max_trips`` times; the message names the signals."""


@dataclass(frozen=True)
class Trip:
    """One failed check: the signal, the metric that failed it, its value, and a readable account."""

    signal: Signal
    key: str
    value: float
    detail: str  # e.g. "actor/entropy 0.003 is below the floor 0.01"


@dataclass
class Baselines:
    """Smoothed values of the watched metrics over the steps that passed (saved with every checkpoint)."""

    mean: dict[str, float] = field(default_factory=dict)  # metric -> smoothed value
    seen: dict[str, int] = field(default_factory=dict)  # metric -> passed steps that logged it
    best_reward: float | None = None  # running best of the smoothed reward/mean, from 1/smoothing steps on
    reward_stage: float | None = None  # the reward/stage those reward values belong to (None: one reward)

    def smoothed(self, key: str, value: float, smoothing: float) -> float:
        """The baseline of ``key`` with ``value`` folded in: a plain mean while it has seen fewer than
        ``1 / smoothing`` steps, then an exponential moving average with weight ``smoothing``."""
        n = self.seen.get(key, 0)
        if n == 0:
            return value
        return self.mean[key] + max(smoothing, 1.0 / (n + 1)) * (value - self.mean[key])

    def fold(self, metrics: dict[str, float], cfg: WatchdogConfig) -> None:
        """Take a passed step's metrics into the baselines."""
        stage = metrics.get("reward/stage")
        if stage != self.reward_stage:  # another reward from here on: its own scale
            self.reward_stage, self.best_reward = stage, None
            self.mean.pop(REWARD, None)
            self.seen.pop(REWARD, None)
        for key in WATCHED:
            if key in metrics:
                self.mean[key] = self.smoothed(key, metrics[key], cfg.smoothing)
                self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen.get(REWARD, 0) >= reward_warmup(cfg):
            best, now = self.best_reward, self.mean[REWARD]
            self.best_reward = now if best is None else max(best, now)


def reward_warmup(cfg: WatchdogConfig) -> int:
    """Passed steps before the reward check applies: until then the smoothed reward is a short mean."""
    return math.ceil(1.0 / cfg.smoothing)


def find_trip(metrics: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    """The first check a step's ``metrics`` fail against the baselines of the passed steps (None: it passed)."""
    for check in (_nonfinite, _entropy, _kl, _length, _invalid, _reward):
        trip = check(metrics, base, cfg)
        if trip is not None:
            return trip
    return None


def _nonfinite(m: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    for key, value in m.items():
        if key.startswith(FINITE) and not math.isfinite(value):
            return Trip("nonfinite", key, value, f"{key} is {value}")
    skipped = m.get("actor/skipped_steps", 0.0)
    if skipped > 0:
        detail = f"actor/skipped_steps {skipped:g}: a non-finite loss or gradient skipped an update"
        return Trip("nonfinite", "actor/skipped_steps", skipped, detail)
    return None


def _entropy(m: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    key = "actor/entropy"
    if key in m and m[key] < cfg.entropy_min:
        return Trip("entropy_floor", key, m[key], f"{key} {m[key]:.4g} is below the floor {cfg.entropy_min:g}")
    return _jump(m, base, cfg, key, cfg.entropy_factor, "entropy_jump")


def _kl(m: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    key = "actor/kl"
    if key in m and m[key] > cfg.kl_max:
        return Trip("kl_ceiling", key, m[key], f"{key} {m[key]:.4g} is above the ceiling {cfg.kl_max:g}")
    return None


def _length(m: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    jump = _jump(m, base, cfg, "rollout/response_tokens", cfg.length_factor, "length_jump", down=False)
    key = "rollout/truncated"
    if jump is not None or key not in m or base.seen.get(key, 0) < cfg.warmup:
        return jump
    rise = m[key] - base.mean[key]
    if rise > cfg.truncated_rise:
        detail = f"{key} {m[key]:.3g} is {rise:.3g} above its baseline {base.mean[key]:.3g}"
        return Trip("truncated_jump", key, m[key], f"{detail} (limit {cfg.truncated_rise:g})")
    return None


def _invalid(m: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    """Invalid turns per sample more than ``invalid_rise`` above their baseline, from the first passed step."""
    key = "rollout/invalid"
    if cfg.invalid_rise <= 0 or key not in m or base.seen.get(key, 0) < 1:
        return None
    rise = m[key] - base.mean[key]
    if rise > cfg.invalid_rise:
        detail = f"{key} {m[key]:.3g} is {rise:.3g} above its baseline {base.mean[key]:.3g}"
        return Trip("invalid_jump", key, m[key], f"{detail} (limit {cfg.invalid_rise:g})")
    return None


def _jump(
    m: dict[str, float],
    base: Baselines,
    cfg: WatchdogConfig,
    key: str,
    factor: float,
    signal: Signal,
    down: bool = True,
) -> Trip | None:
    """``key`` more than ``factor`` times above (or, with ``down``, below) its baseline, once it has ``warmup``
    passed steps."""
    if key not in m or base.seen.get(key, 0) < cfg.warmup or base.mean[key] <= 0:  # a zero baseline has no scale
        return None
    value, ref = m[key], base.mean[key]
    if value > ref * factor or (down and value < ref / factor):
        return Trip(signal, key, value, f"{key} {value:.4g} is more than {factor:g}x off its baseline {ref:.4g}")
    return None


def _reward(m: dict[str, float], base: Baselines, cfg: WatchdogConfig) -> Trip | None:
    if REWARD not in m or base.best_reward is None or m.get("reward/stage") != base.reward_stage:
        return None
    smoothed = base.smoothed(REWARD, m[REWARD], cfg.smoothing)
    drop = base.best_reward - smoothed
    if drop > cfg.reward_drop:
        detail = f"smoothed {REWARD} {smoothed:.3g} is {drop:.3g} below its best {base.best_reward:.3g}"
        return Trip("reward_drop", REWARD, m[REWARD], f"{detail} (limit {cfg.reward_drop:g})")
    return None


@dataclass
class WatchdogState:
    """What the watchdog carries across steps, rollbacks and resumes (``TrainState.extra["watchdog"]``)."""

    trips: int = 0
    signals: list[str] = field(default_factory=list)  # the signal of each trip, in order
    passed: int | None = None  # step of the newest checkpoint that passed
    pending: int | None = None  # step of a newer checkpoint whose next step has not passed yet
    baselines: Baselines = field(default_factory=Baselines)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchdogState:
        return cls(**{**data, "baselines": Baselines(**data["baselines"])})


class Watchdog:
    """Applies ``train.watchdog`` to a :class:`~searchrl.trainer.loop.Trainer`: checks the steps ``fit``
    runs, tells checkpoints that passed from pending ones, and restores and escalates on a trip."""

    def __init__(self, cfg: WatchdogConfig) -> None:
        self.cfg, self.state = cfg, WatchdogState()

    def resumed(self, state: TrainState) -> None:
        """Continue with the watchdog state saved in a resumed checkpoint (none: that checkpoint is the start)."""
        saved = (state.extra or {}).get("watchdog")
        self.state = WatchdogState.from_dict(saved) if saved else WatchdogState(pending=state.step)

    def start(self, trainer: Trainer) -> None:
        """Before ``fit``'s first step: the run's starting point passes (written now if it is not on disk),
        and the learning rate and KL term of earlier trips apply (a resumed run)."""
        if self.state.passed is None:
            if self.state.pending != trainer.state.step:
                trainer.save()
            self.state.passed, self.state.pending = trainer.state.step, None
        self.escalate(trainer)

    def saving(self, state: TrainState) -> tuple[int, ...]:
        """Before a checkpoint of ``state`` is written: the watchdog goes into ``state.extra`` and the new
        checkpoint is pending. Returns the steps pruning must keep (the last passed checkpoint)."""
        self.state.pending = state.step
        state.extra = {**(state.extra or {}), "watchdog": asdict(self.state)}
        return () if self.state.passed is None else (self.state.passed,)

    def after_step(self, trainer: Trainer, metrics: dict[str, float]) -> bool:
        """Check the step ``fit`` just ran. True: it passed. False: it tripped, ``metrics`` gained the
        ``watchdog/…`` event and the trainer is back at the last passed checkpoint. The trip that reaches
        ``max_trips`` raises :class:`WatchdogError` after the same restore."""
        trip = find_trip(metrics, self.state.baselines, self.cfg)
        if trip is None:
            self.state.baselines.fold(metrics, self.cfg)
            if self.state.pending is not None:  # the first step run from its weights passed
                self.state.passed, self.state.pending = self.state.pending, None
            return True
        step = trainer.state.step
        self.state.trips += 1
        self.state.signals.append(trip.signal)
        restored = self.restore(trainer)
        event = {
            "watchdog/trip": 1.0,
            f"watchdog/{trip.signal}": 1.0,
            "watchdog/trips": float(self.state.trips),
            "watchdog/value": trip.value,
            "watchdog/restored_step": float(restored),
            "watchdog/lr_scale": self.cfg.lr_factor**self.state.trips,
            "watchdog/kl_coef": trainer.update.t.kl_coef,
        }
        metrics.update(event)
        if trainer.metrics is not None:  # rank 0 logs
            trainer.metrics.log(step, event)
            print(
                f"watchdog: step {step} tripped {trip.signal}: {trip.detail}; restored step {restored}, "
                f"lr x{event['watchdog/lr_scale']:g} (trip {self.state.trips} of {self.cfg.max_trips})",
                file=sys.stderr,
                flush=True,
            )
        if self.state.trips >= self.cfg.max_trips:
            raise WatchdogError(
                f"train.watchdog stopped the run at step {step} after {self.state.trips} trips "
                f"({', '.join(self.state.signals)}); the last: {trip.signal}, {trip.detail}. The last checkpoint "
                f"that passed (step {restored}) is restored and is the run's latest; lower train.lr, or raise "
                "train.watchdog.max_trips or the signal's threshold."
            )
        return False

    def restore(self, trainer: Trainer) -> int:
        """Load the last passed checkpoint into ``trainer`` (its data position stays), make it ``latest``,
        and apply the learning rate and KL term of the trips so far. Returns its step."""
        if self.state.passed is None:
            raise RuntimeError("the watchdog has no passed checkpoint; Trainer.fit calls start() first")
        saved = load_checkpoint(
            checkpoint_dir(trainer.run_dir, self.state.passed), trainer.modules(), trainer.optimizers()
        )
        if trainer.dist.is_main:
            rewind(trainer.run_dir, saved.step)
        then = (saved.extra or {}).get("watchdog")
        if then:
            self.state.baselines = WatchdogState.from_dict(then).baselines
        self.state.pending = None
        trainer.state = TrainState(saved.step, trainer.state.data_position, saved.extra)
        self.escalate(trainer)
        return saved.step

    def escalate(self, trainer: Trainer) -> None:
        """Learning rates at ``lr_factor ** trips`` times the configured ones; after a trip, the KL term."""
        t, scale = trainer.cfg.train, self.cfg.lr_factor**self.state.trips
        for opt, lr in ((trainer.optimizer, t.lr), (trainer.critic_opt, t.critic_lr)):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr * scale
        if self.state.trips > 0 and self.cfg.kl_coef > trainer.update.t.kl_coef:
            _switch_on_kl(trainer, self.cfg.kl_coef)


def _switch_on_kl(trainer: Trainer, coef: float) -> None:
    """A KL-to-the-start term with coefficient ``coef`` in the loss; builds the reference if the run had none."""
    if trainer.reference is None:
        trainer.reference = Reference(trainer.policy, trainer.lora)  # the policy as restored
        start = checkpoint_dir(trainer.run_dir, 0)
        if (start / "policy.safetensors").is_file():
            trainer.reference.load(start)
    trainer.update = trainer.build_update(trainer.cfg.train.model_copy(update={"kl_coef": coef}))
