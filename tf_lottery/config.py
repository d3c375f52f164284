"""Configuration: training, pruning and whole-experiment settings, validated, with a stable name.

Nothing here imports TensorFlow, so bad settings are reported at once.
"""

import dataclasses
import hashlib
import json
import pathlib

from tf_lottery import data

# Choices, kept here so that a config validates without importing TensorFlow.
MODELS = ("lenet",)
RESETS = ("init", "rewind")
SCOPES = ("layer", "global")
CRITERIA = ("magnitude", "random")
OPTIMIZERS = ("adam", "sgd")

# Fields that change where results go or how fast they come, never what they are.
NOT_RESULT_FIELDS = ("root_dir", "experiment_dir", "data_dir", "eval_batch_size",
                     "steps_per_call", "checkpoint_every", "deterministic", "jit_compile")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How one network is trained: optimiser, schedule, batch, evaluation and checkpoint cadence."""
    train_steps: int = 50000
    batch_size: int = 60
    optimizer: str = "adam"
    learning_rate: float = 1.2e-3
    momentum: float = 0.9
    nesterov: bool = False
    lr_milestones: tuple = ()
    lr_gamma: float = 0.1
    eval_every: int = 100
    eval_batch_size: int = 5000
    checkpoint_every: int = 1000
    steps_per_call: int = 100
    jit_compile: bool = True
    data_seed: int = 0


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    """How each IMP round chooses weights: rate, output-layer rate, scope, criterion, exclusions."""
    fraction: float = 0.2
    output_fraction: float = 0.1
    scope: str = "layer"
    criterion: str = "magnitude"
    exclude: tuple = ()
    seed: int = 0

    def fractions(self, keys, output_key=None):
        """{key: rate} for the masked weights `keys`; `output_key` gets output_fraction."""
        exclude = set(self.exclude)
        return {key: self.output_fraction if key == output_key else self.fraction
                for key in keys if key.split("/")[0] not in exclude}


class ConfigError(ValueError):
    """An invalid setting; `field` names the setting (and the flag of the same name)."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, model, pruning, reset, training and folder settings."""
    model: str = "lenet"
    hidden: tuple = (300, 100)
    dataset: str = "mnist"
    data_dir: str | None = None
    validation_size: int = 5000
    rounds: int = 12
    prune_fraction: float = 0.2
    output_prune_fraction: float | None = None
    prune_scope: str = "layer"
    prune_criterion: str = "magnitude"
    exclude: tuple = ()
    reset: str = "init"
    rewind_step: int = 0
    train_steps: int = 50000
    batch_size: int = 60
    optimizer: str = "adam"
    learning_rate: float = 1.2e-3
    momentum: float = 0.9
    nesterov: bool = False
    lr_milestones: tuple = ()
    lr_gamma: float = 0.1
    eval_every: int = 100
    eval_batch_size: int = 5000
    checkpoint_every: int = 1000
    steps_per_call: int = 100
    jit_compile: bool = True
    seed: int = 0
    data_seed: int | None = None
    deterministic: bool = True
    root_dir: str = "experiments"
    experiment_dir: str | None = None

    def __post_init__(self):
        for name in ("hidden", "exclude", "lr_milestones"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        self.validate()

    def validate(self):
        """Raises ConfigError naming the first invalid field."""
        def check(ok, field, message):
            if not ok:
                raise ConfigError(field, f"{message}, got {getattr(self, field)!r}")

        check(self.model in MODELS, "model", f"must be one of {', '.join(MODELS)}")
        check(self.dataset in data.DATASETS, "dataset", f"must be one of {', '.join(data.DATASETS)}")
        check(bool(self.hidden) and all(isinstance(w, int) and w > 0 for w in self.hidden),
              "hidden", "must be positive layer widths")
        check(self.validation_size >= 0, "validation_size", "must be >= 0")
        check(self.rounds >= 0, "rounds", "must be >= 0")
        check(0 < self.prune_fraction < 1, "prune_fraction", "must be in (0, 1)")
        check(self.output_prune_fraction is None or 0 <= self.output_prune_fraction < 1,
              "output_prune_fraction", "must be in [0, 1)")
        check(self.prune_scope in SCOPES, "prune_scope",
              f"must be one of {', '.join(SCOPES)}")
        check(self.prune_criterion in CRITERIA, "prune_criterion",
              f"must be one of {', '.join(CRITERIA)}")
        check(self.reset in RESETS, "reset", f"must be one of {', '.join(RESETS)}")
        check(self.train_steps > 0, "train_steps", "must be > 0")
        check(0 <= self.rewind_step <= self.train_steps, "rewind_step",
              f"must be in [0, train_steps={self.train_steps}]")
        check(self.reset == "rewind" or self.rewind_step == 0, "rewind_step",
              "is only used with --reset=rewind")
        check(self.batch_size > 0, "batch_size", "must be > 0")
        check(self.optimizer in OPTIMIZERS, "optimizer",
              f"must be one of {', '.join(OPTIMIZERS)}")
        check(self.learning_rate > 0, "learning_rate", "must be > 0")
        check(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        check(all(0 < m < self.train_steps for m in self.lr_milestones)
              and list(self.lr_milestones) == sorted(set(self.lr_milestones)),
              "lr_milestones", "must be increasing iterations inside (0, train_steps)")
        check(0 < self.lr_gamma <= 1, "lr_gamma", "must be in (0, 1]")
        check(self.eval_every > 0, "eval_every", "must be > 0")
        check(self.eval_batch_size > 0, "eval_batch_size", "must be > 0")
        check(self.checkpoint_every > 0, "checkpoint_every", "must be > 0")
        check(self.steps_per_call > 0, "steps_per_call", "must be > 0")
        check(self.seed >= 0, "seed", "must be >= 0")
        check(self.data_seed is None or self.data_seed >= 0, "data_seed", "must be >= 0")

    @property
    def resolved_output_prune_fraction(self):
        """The output layer's rate: as given, or half of prune_fraction (the paper's rule)."""
        if self.output_prune_fraction is None:
            return self.prune_fraction / 2
        return self.output_prune_fraction

    def training(self):
        """The TrainingConfig part."""
        return TrainingConfig(
            train_steps=self.train_steps, batch_size=self.batch_size, optimizer=self.optimizer,
            learning_rate=self.learning_rate, momentum=self.momentum, nesterov=self.nesterov,
            lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma,
            eval_every=self.eval_every, eval_batch_size=self.eval_batch_size,
            checkpoint_every=self.checkpoint_every, steps_per_call=self.steps_per_call,
            jit_compile=self.jit_compile,
            data_seed=self.seed if self.data_seed is None else self.data_seed)

    def pruning(self):
        """The PruningConfig part."""
        return PruningConfig(
            fraction=self.prune_fraction, output_fraction=self.resolved_output_prune_fraction,
            scope=self.prune_scope, criterion=self.prune_criterion, exclude=self.exclude,
            seed=self.seed)

    def to_dict(self):
        """All fields as JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        """Inverse of to_dict; unknown keys are a ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(unknown[0], "unknown setting")
        return cls(**values)

    def result_fields(self):
        """The fields that change results (the ones the hash and the resume check use)."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RESULT_FIELDS}

    def config_hash(self):
        """A short stable hash of result_fields()."""
        text = json.dumps(self.result_fields(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def name(self, kind="imp"):
        """Readable folder name: kind, model, dataset, reset and the hash."""
        parts = [kind, self.model, self.dataset]
        if kind == "imp":
            parts.append(self.reset if self.reset == "init" else f"rewind{self.rewind_step}")
        return "_".join(parts + [self.config_hash()])

    def directory(self, kind="imp"):
        """experiment_dir if set, else root_dir/name(kind)."""
        if self.experiment_dir:
            return pathlib.Path(self.experiment_dir)
        return pathlib.Path(self.root_dir) / self.name(kind)
