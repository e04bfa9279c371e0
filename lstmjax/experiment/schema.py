"""The experiment schema: frozen pydantic models of one YAML experiment file.

Defaults shown; only ``task.name`` is required::

    name: <file stem>          # run directory: <output.dir>/<name>
    description: ""            # free text, shown in the report
    task:                      # the task; its own parameters sit beside name and length
      name: ...                # required: one of lstmjax.tasks.names()
      length: 100              # the gap parameter of every task
    model:                     # the recurrent network; a per-step linear readout is added on top
      cell: lstm               # lstmjax.cells.names()
      hidden_size: 64          # units per layer (and direction)
      num_layers: 1            # stacked layers
      bidirectional: false     # a forward and a backward pass per layer, concatenated
      dropout: 0.0             # between layers
      recurrent_dropout: 0.0   # variational, on h_{t-1}
      proj_size: 0             # PyTorch's LSTM projection of h (LSTM cells only; 0: off)
      residual: false          # a layer whose input and output widths agree adds its input
      zoneout: 0.0             # a rate, or [z_c, z_h] for LSTM-type cells (Krueger et al. 2017)
      weight_drop: 0.0         # DropConnect on W_h, one mask per batch (Merity et al. 2017)
      learn_initial_carry: false # the initial carry is a trained parameter
      remat: null              # bounded-memory backward pass: keep the carry every K steps and
                               # recompute segments (an int K >= 1, or auto = round(sqrt(T)))
      compute_dtype: float32   # bfloat16: mixed precision -- float32 parameters and optimiser,
                               # the recurrent network computed in bfloat16
      options: {}              # cell options; each reaches the cells of the sweep that take it
    train:                     # optimiser, schedule, clipping, budget, evaluation cadence, seeds
      optimizer: adam          # adam | adamw | sgd | rmsprop
      learning_rate: 1.0e-3    # peak learning rate
      b1: 0.9, b2: 0.999, eps: 1.0e-8   # adam, adamw (eps also rmsprop)
      momentum: null           # sgd (null: 0.9), rmsprop (null: none)
      rms_decay: 0.9           # rmsprop
      weight_decay: 0.0        # decoupled for adamw, L2 otherwise
      schedule: constant       # constant | cosine | step, after warmup_steps of linear warmup
      warmup_steps: 0          # linear warmup from 0 over these steps
      decay_every: 1000        # step: lr *= decay_factor every decay_every steps
      decay_factor: 0.5        # step schedule: the factor
      final_lr_fraction: 0.0   # cosine: final lr / peak lr
      grad_clip: 1.0           # global-norm clipping (null: off)
      grad_clip_value: null    # elementwise clipping (null: off)
      batch_size: 32           # training sequences per step
      steps: 3000              # the step budget per seed
      eval_every: 100          # steps per chunk: evaluate, report progress, maybe checkpoint
      eval_batch_size: 256     # fresh sequences per evaluation
      early_stop: true         # freeze a seed once the task's `solved` criterion holds
      blowup_factor: 100       # a seed whose final loss exceeds 100 x chance "blew up" (null: off)
      vmap_seeds: true         # seeds via jax.vmap (false: lax.map, one after another)
      batch_learning_rates: true  # trials differing only in learning_rate: one program
      data_parallel: false     # each trial's batch sharded over all devices, trials in turn
      seeds: 1                 # a count (seeds 0..n-1) or a list of seeds
    sweep: {}                  # dotted key -> list of values; the cartesian product, at most
                               # 100000 trials (space.MAX_TRIALS, checked before expanding). A key
                               # without a dot is a grouped axis: each value is a mapping of
                               # dotted keys set together (and an optional `name`), e.g.
                               # {variant: [{name: slow-rnn, model.cell: rnn,
                               #             train.learning_rate: 1.0e-3}, ...]}
      method: grid             # grid | random | optuna (reserved keys of the sweep:
                               # method, num_trials, seed, objective, direction, pruner)
      num_trials: null         # random, optuna: how many trials (required, at most 100000;
                               # random: no more than its rounded ranges can give distinct)
      seed: 0                  # random, optuna: the sampler's seed
      objective: null          # random, optuna (optuna: required): a statistic of summary.json
                               # (solved_fraction, solved_seeds, median_steps_to_solve,
                               # median_final_loss, diverged_seeds, blew_up_seeds); it ranks the
                               # leaderboard (random without one: solved_fraction)
      pruner: none             # optuna: none | median | successive_halving | hyperband, or
                               # {name: median, n_warmup_steps: 0, ...} (optuna's settings; steps
                               # are training steps): may stop a trial after an evaluation chunk
      direction: null          # random, optuna: maximize | minimize (null: the objective's own)
                               # random, optuna: a key's value is a list (a choice) or one of
                               # {choice: [...]}, {uniform: [low, high]},
                               # {loguniform: [low, high]}, {int: [low, high]} (inclusive), or
                               # {distribution: loguniform, low: ..., high: ...}
                               # (lstmjax.experiment.space, lstmjax.experiment.search)
    frontier: null             # search the largest solved gap per variant
                               # (lstmjax.experiment.frontier); when given:
      key: task.length         # the swept key whose largest solved value is searched
      start: 5                 # the first value probed
      max: 2000                # the search stops here (a variant solving it: "> max")
      factor: 2.0              # grow by this factor until a probe is unsolved ...
      resolution: 0.1          # ... then bisect until the bracket is this narrow (relative)
      min_solved: 0.5          # a probe is solved when this fraction of its seeds solve it
      max_budget: null         # extend an unsolved probe still learning up to these steps
      budget_factor: 2         # each extension multiplies the probe's train.steps by this
      shared_program: true     # gaps share training programs (tasks with traced lengths)
      buffer_ratio: 4          # buffers max, max/4, ...: a gap takes the smallest that fits
    diagnostics: null          # gradient flow, gate statistics (diagnostics.jsonl); given:
      every: 500               # steps (at the next chunk boundary), and at step 0
      batch_size: 32           # fixed sequences the diagnostics look at
      num_probes: 8            # random probe vectors of the gradient flow
    eval: null                 # length generalisation (summary.json, report); when given:
      lengths: []              # evaluate each trained trial at these values of task.length
      batch_size: null         # sequences per evaluation (null: train.eval_batch_size)
    output:                    # where results go and how training state is kept
      dir: runs                # run directory parent (a leading ~ is the home directory)
      checkpoint_every: 500    # steps (at the next chunk boundary)
      keep_checkpoints: 1      # newest checkpoints kept per trial
      plots: true              # draw the PNG plots into RUN_DIR/plots/
      progress: auto           # auto | rich | plain | none
      devices: null            # local devices to use (null: all; `lstmjax run` makes one
                               # CPU device per core); trials run concurrently, one per device
      loggers: [jsonl]         # also tensorboard, wandb (lstmjax.experiment.loggers); jsonl
                               # (metrics.jsonl) is always written
      wandb:                   # where the wandb logger sends its runs
        mode: offline          # offline | online (online needs `wandb login`)
        project: lstmjax       # the W&B project
        entity: null           # the W&B team or user (null: your default)
        group: null            # null: the experiment name
        tags: []               # W&B run tags
    imports: []                # modules imported before validation, e.g. the package that
                               # registers your own cells or tasks (recorded in the run, so
                               # --resume, report and load_results import them again)

This module checks types, ranges and the relations inside one section; what needs the cell and
task registries is checked by :func:`lstmjax.experiment.config.from_dict` for each trial.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from lstmjax.experiment.space import SearchSpace
from lstmjax.experiment.space import parse as parse_space

__all__ = [
    "ExperimentConfig", "TaskConfig", "ModelConfig", "TrainConfig", "OutputConfig",
    "WandbConfig", "FrontierConfig", "DiagnosticsConfig", "EvalConfig", "SECTIONS", "SWEEPABLE",
]  # fmt: skip


# Upper bounds: far above anything that trains on one machine, low enough that arithmetic on
# them cannot overflow (what fits in memory: lstmjax.experiment.resources).
MAX_SEED, MAX_SEEDS = 2**32, 4096  # a seed is a uint32 PRNG key: integers in [0, 2^32)
MAX_SIZE = 1 << 20  # hidden_size, batch sizes
MAX_LENGTH, MAX_STEPS = 10_000_000, 1_000_000_000
MAX_NAME = 100  # characters of a run name (the directory name)


def _seeds(value: Any) -> Any:
    """``seeds: 3`` means seeds 0, 1, 2; a list names them."""
    if isinstance(value, bool):
        raise ValueError(f"expected a seed count >= 1 or a list of integer seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"expected a seed count >= 1 or a list of seeds, got {value!r}")
        if value > MAX_SEEDS:
            raise ValueError(f"{value} seeds is more than the limit of {MAX_SEEDS} per trial")
        return tuple(range(value))
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("empty list of seeds (give a count or at least one seed)")
        if len(value) > MAX_SEEDS:
            raise ValueError(f"{len(value)} seeds is more than the limit of {MAX_SEEDS} per trial")
        for s in value:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < MAX_SEED:
                raise ValueError(f"seeds must be integers in [0, 2^32), got {s!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct, got {list(value)}")
        return tuple(value)
    raise ValueError(f"expected a seed count >= 1 or a list of integer seeds, got {value!r}")


_Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


def _remat(value: Any) -> Any:
    """``model.remat``: steps per checkpointed segment (an integer >= 1), ``auto`` or null."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"expected the steps per checkpointed segment (an integer >= 1), auto "
            f"(round(sqrt(T))) or null (off), got {value!r}"
        )
    return value


def _pair(value: Any) -> Any:
    """A YAML list (``zoneout: [0.5, 0.05]``) as the tuple the model takes."""
    return tuple(value) if isinstance(value, list) else value


class _Section(BaseModel):
    # allow_inf_nan=False: a learning rate, eps or bound of .inf / .nan is meaningless
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _check_finite(where: str, value: Any) -> None:
    """Free-form values (cell options, task parameters) must not hold .inf or .nan."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{where}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_finite(where, v)


class TaskConfig(BaseModel):
    """``task: {name: adding, length: 100, <task params>...}`` -- params sit beside the name."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)

    name: str
    length: int = Field(100, ge=1, le=MAX_LENGTH)

    @model_validator(mode="after")
    def _finite_params(self):
        for key, value in (self.model_extra or {}).items():
            _check_finite(key, value)
        return self

    @property
    def params(self) -> dict[str, Any]:
        """Task parameters other than name and length."""
        return dict(self.model_extra or {})


class ModelConfig(_Section):
    """The recurrent network; a per-step linear readout is always added on top."""

    cell: str = "lstm"
    hidden_size: int = Field(64, ge=1, le=MAX_SIZE)
    num_layers: int = Field(1, ge=1, le=256)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    recurrent_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    proj_size: int = Field(0, ge=0)
    residual: bool = False
    # lj.RNN layer options: zoneout a rate or [z_c, z_h] (LSTM-type cells); DropConnect on W_h
    zoneout: Annotated[_Rate | tuple[_Rate, _Rate], BeforeValidator(_pair)] = 0.0
    weight_drop: float = Field(0.0, ge=0.0, lt=1.0)
    learn_initial_carry: bool = False
    # lj.RNN(remat=...): checkpoint the carry every K steps (an int >= 1 or "auto"); None: off
    remat: Annotated[int | Literal["auto"] | None, BeforeValidator(_remat)] = None
    # mixed precision: parameters (and the optimiser) stay float32, the RNN runs in this dtype
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _finite_options(cls, v: dict) -> dict:
        for key, value in v.items():
            _check_finite(key, value)
        return v

    @model_validator(mode="after")
    def _one_precision(self):
        dtype = self.options.get("dtype", "float32")
        if self.compute_dtype != "float32" and dtype != "float32":
            raise ValueError(
                f"compute_dtype: {self.compute_dtype} computes with float32 parameters, but "
                f"model.options.dtype is {dtype!r}; drop one of them")
        return self

    @model_validator(mode="after")
    def _proj_below_hidden(self):
        if self.proj_size >= self.hidden_size and self.proj_size:
            raise ValueError(
                f"proj_size: {self.proj_size} must be smaller than "
                f"model.hidden_size ({self.hidden_size})"
            )
        return self


class TrainConfig(_Section):
    """Optimiser, schedule, clipping, budget, evaluation cadence and seeds."""

    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0.0)
    b1: float = Field(0.9, ge=0.0, lt=1.0)
    b2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    rms_decay: float = Field(0.9, gt=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    decay_every: int = Field(1000, ge=1, le=MAX_STEPS)
    decay_factor: float = Field(0.5, gt=0.0, le=1.0)
    final_lr_fraction: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    grad_clip_value: float | None = Field(None, gt=0.0)
    batch_size: int = Field(32, ge=1, le=MAX_SIZE)
    steps: int = Field(3000, ge=1, le=MAX_STEPS)
    eval_every: int = Field(100, ge=1, le=MAX_STEPS)
    eval_batch_size: int = Field(256, ge=1, le=MAX_SIZE)
    early_stop: bool = True
    blowup_factor: float | None = Field(100.0, gt=1.0)  # final loss > factor x chance: blew up
    vmap_seeds: bool = True
    batch_learning_rates: bool = True  # trials that differ only in learning_rate: one program
    # shard each trial's batch over all devices (XLA reduces the gradients); trials run in turn
    data_parallel: bool = False
    seeds: Annotated[tuple[int, ...], BeforeValidator(_seeds)] = (0,)

    @model_validator(mode="after")
    def _eval_within_budget(self):
        if self.eval_every > self.steps:
            raise ValueError(
                f"eval_every: {self.eval_every} is larger than train.steps ({self.steps})"
            )
        if self.warmup_steps >= self.steps and self.warmup_steps:
            raise ValueError(
                f"warmup_steps: {self.warmup_steps} must be smaller than train.steps "
                f"({self.steps})"
            )
        return self


def _loggers(value: Any) -> Any:
    """``loggers: tensorboard`` or a list of names, each once (jsonl is always written)."""
    value = [value] if isinstance(value, str) else value
    if isinstance(value, (list, tuple)):
        dupes = [v for v in value if value.count(v) > 1]
        if dupes:
            raise ValueError(f"{dupes[0]!r} is listed twice")
        return tuple(value)
    return value


class WandbConfig(_Section):
    """``output.wandb``: where the ``wandb`` logger sends its runs -- offline unless told."""

    mode: Literal["offline", "online"] = "offline"
    project: str = Field("lstmjax", min_length=1)
    entity: str | None = None
    group: str | None = None  # default: the experiment name
    tags: Annotated[tuple[str, ...], BeforeValidator(_pair)] = ()


class OutputConfig(_Section):
    """Where results go and how often training state is checkpointed."""

    dir: str = "runs"  # a leading ~ is the home directory
    checkpoint_every: int = Field(500, ge=1, le=MAX_STEPS)
    keep_checkpoints: int = Field(1, ge=1, le=1000)
    plots: bool = True
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    loggers: Annotated[tuple[Literal["jsonl", "tensorboard", "wandb"], ...],
                       BeforeValidator(_loggers)] = ("jsonl",)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    devices: int | None = Field(None, ge=1, le=4096)  # local devices (None: all of them)


class FrontierConfig(_Section):
    """Search per variant for the largest value of ``key`` (the gap) that is solved."""

    key: str = "task.length"
    start: int = Field(5, ge=1, le=MAX_LENGTH)
    max: int = Field(2000, ge=1, le=MAX_LENGTH)
    factor: float = Field(2.0, gt=1.0, le=100.0)
    resolution: float = Field(0.1, gt=0.0, le=10.0)
    min_solved: float = Field(0.5, gt=0.0, le=1.0)
    # (budget extension of an unsolved probe: lstmjax.experiment.frontier.fair_budget)
    max_budget: int | None = Field(None, ge=1, le=MAX_STEPS)
    budget_factor: float = Field(2.0, gt=1.0, le=100.0)
    shared_program: bool = True  # lstmjax.experiment.gap_programs
    buffer_ratio: float | None = Field(4.0, gt=1.0, le=1000.0)  # (gap_programs.buffer_length)

    @model_validator(mode="after")
    def _start_below_max(self):
        if self.start >= self.max:
            raise ValueError(f"start: {self.start} must be smaller than frontier.max ({self.max})")
        return self


class EvalConfig(_Section):
    """Length generalisation: each trained trial is also evaluated at these gaps."""

    lengths: tuple[int, ...] = ()  # values of task.length (the training one may be among them)
    batch_size: int | None = Field(None, ge=1, le=MAX_SIZE)  # default: train.eval_batch_size

    @field_validator("lengths", mode="before")
    @classmethod
    def _lengths(cls, v):
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(v, tuple):
            for x in v:
                if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_LENGTH:
                    raise ValueError(f"expected integers in [1, {MAX_LENGTH}], got {x!r}")
            if len(set(v)) != len(v):
                raise ValueError(f"{list(v)} lists a length twice")
        return v


class DiagnosticsConfig(_Section):
    """Gradient flow and gate statistics during training (lstmjax.experiment.diagnose)."""

    every: int = Field(500, ge=1, le=MAX_STEPS)  # steps (at the next chunk boundary), and at 0
    batch_size: int = Field(32, ge=1, le=4096)  # fixed sequences the diagnostics look at
    num_probes: int = Field(8, ge=1, le=256)  # random probe vectors of the gradient flow


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
SWEEPABLE = ("task", "model", "train")
SECTIONS = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig, "output": OutputConfig}


class ExperimentConfig(_Section):
    """A whole experiment: one base trial plus a sweep (dotted key -> list of values)."""

    name: str = "experiment"
    description: str = ""
    task: TaskConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sweep: dict[str, Any] = Field(default_factory=dict)  # see lstmjax.experiment.space
    frontier: FrontierConfig | None = None
    diagnostics: DiagnosticsConfig | None = None
    eval: EvalConfig | None = None
    output: OutputConfig = Field(default_factory=OutputConfig)
    imports: Annotated[tuple[str, ...], BeforeValidator(_pair)] = ()  # lstmjax._plugins

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a valid run name (use letters, digits, '_', '-', '.', '+')"
            )
        if len(v) > MAX_NAME:
            raise ValueError(f"a run name of {len(v)} characters is longer than {MAX_NAME}")
        return v

    @field_validator("sweep")
    @classmethod
    def _valid_sweep(cls, v: dict) -> dict:
        for key, axis in parse_space(v).axes.items():
            if not axis.is_choice:
                continue
            where = key if axis.kind == "list" else axis.where.removeprefix("sweep.")
            seen = []
            for value in axis.values:
                if any(value == s and type(value) is type(s) for s in seen):
                    raise ValueError(f"{where}: {value!r} is listed twice")
                seen.append(value)
            for value in axis.values:
                _check_finite(where, value)
        return v

    @property
    def search(self) -> SearchSpace:
        """The sweep's method, settings and axes (:mod:`lstmjax.experiment.space`)."""
        return parse_space(self.sweep)
