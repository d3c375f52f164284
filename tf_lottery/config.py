"""Configuration: training, pruning and whole-experiment settings, validated, with a stable name.

Nothing here imports TensorFlow, so bad settings are reported at once.
"""

import dataclasses
import hashlib
import json
import pathlib

from tf_lottery import data

# Choices, kept here so that a config validates without importing TensorFlow.
MODELS = ("lenet", "conv2", "conv4", "conv6", "vgg16", "vgg19", "resnet20", "resnet56", "resnet18",
          "resnet50")
RESETS = ("init", "rewind")
SCOPES = ("layer", "global")
CRITERIA = ("magnitude", "random")
OPTIMIZERS = ("adam", "sgd")
ON_NAN = ("stop", "skip_round")
STRUCTURES = ("unstructured", "neuron", "filter", "channel", "block", "n_of_m")
GLOBAL_STRUCTURES = ("unstructured", "block")  # scores comparable across tensors
STRUCTURE_NORMS = ("l1", "l2")
BLOCK_POOLINGS = ("avg", "max")
SCHEDULES = ("geometric", "polynomial", "constant")
CONTROLS = ("random_reinit", "random_prune", "one_shot")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

# Fields added after the first experiments: they enter result_fields (and the folder
# hash) only when set away from their default, so existing folders keep their names.
LATER_FIELDS = ("image_size",)
# Fields that change where results go or how fast they come, never what they are.
NOT_RESULT_FIELDS = ("root_dir", "experiment_dir", "data_dir", "eval_batch_size",
                     "steps_per_call", "checkpoint_every", "deterministic", "jit_compile", "on_nan",
                     "controls", "replicates", "strategy", "tpu")


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
    warmup_steps: int = 0
    weight_decay: float = 0.0
    augment: bool = False
    eval_every: int = 100
    eval_batch_size: int = 5000
    checkpoint_every: int = 1000
    steps_per_call: int = 100
    jit_compile: bool | None = None  # None: XLA unless a convolutional network on CPU
    data_seed: int = 0


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    """How each IMP round chooses what to remove: rates or schedule, scope, criterion, structure.

    With schedule='geometric' (IMP) each round removes `fraction` of the
    remaining units of each tensor (`conv_fraction` for convolution kernels,
    `output_fraction` for the output layer). 'polynomial' and 'constant' are
    TF-MOT's PolynomialDecay and ConstantSparsity with rounds as steps,
    reaching `final_sparsity`; `schedule` may also be any
    tfmot.sparsity.keras.PruningSchedule instance.
    """
    fraction: float = 0.2
    output_fraction: float = 0.1
    conv_fraction: float | None = None
    scope: str = "layer"
    criterion: str = "magnitude"
    structure: str = "unstructured"
    structure_norm: str = "l1"
    block_shape: tuple = (1, 4)
    block_pooling: str = "avg"
    n_of_m: tuple = (2, 4)
    schedule: object = "geometric"
    final_sparsity: float = 0.9
    power: float = 3.0
    exclude: tuple = ()
    seed: int = 0

    def fractions(self, keys, output_key=None, conv_keys=()):
        """{key: rate} for the masked weights `keys` (geometric schedule)."""
        exclude, conv_keys = set(self.exclude), set(conv_keys)
        conv = self.fraction if self.conv_fraction is None else self.conv_fraction
        return {key: self.output_fraction if key == output_key else conv if key in conv_keys
                else self.fraction
                for key in keys if key.split("/")[0] not in exclude}

    def structures(self, keys, output_key=None):
        """{key: structure}; the output layer's units are classes, so neuron/filter prune it weight by weight."""
        unit_structure = self.structure in ("neuron", "filter")
        return {key: "unstructured" if unit_structure and key == output_key else self.structure
                for key in keys}


def _steps(value, field):
    """An iteration count as an int, or an epoch count kept as a string like '160ep'."""
    if isinstance(value, bool):
        raise ConfigError(field, f"must be a number of iterations or epochs, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    try:
        if text.endswith("ep"):
            if float(text[:-2]) < 0:
                raise ValueError
            return text
        return int(text[:-2] if text.endswith("it") else text)
    except ValueError:
        raise ConfigError(field, f"must be iterations (500 or 500it) or epochs (160ep), got {value!r}") from None


def _positive(steps):
    return float(steps[:-2]) > 0 if isinstance(steps, str) else steps > 0


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
    image_size: int = 224
    rounds: int = 12
    prune_fraction: float = 0.2
    output_prune_fraction: float | None = None
    prune_scope: str = "layer"
    prune_criterion: str = "magnitude"
    exclude: tuple = ()
    conv_prune_fraction: float | None = None
    schedule: str = "geometric"
    final_sparsity: float = 0.9
    power: float = 3.0
    structure: str = "unstructured"
    structure_norm: str = "l1"
    block_shape: tuple = (1, 4)
    block_pooling: str = "avg"
    n_of_m: tuple = (2, 4)
    initial_mask: str | None = None
    controls: tuple = ()
    replicates: int = 1
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
    warmup_steps: int = 0
    weight_decay: float = 0.0
    augment: bool = False
    eval_every: int = 100
    eval_batch_size: int = 5000
    checkpoint_every: int = 1000
    steps_per_call: int = 100
    jit_compile: bool | None = None  # None: XLA unless a convolutional network on CPU
    precision: str = "float32"
    strategy: str = "default"
    tpu: str | None = None
    seed: int = 0
    data_seed: int | None = None
    deterministic: bool = True
    on_nan: str = "stop"
    root_dir: str = "experiments"
    experiment_dir: str | None = None

    def __post_init__(self):
        for name in ("hidden", "exclude", "lr_milestones", "block_shape", "n_of_m", "controls"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        for name in ("train_steps", "rewind_step", "warmup_steps"):
            object.__setattr__(self, name, _steps(getattr(self, name), name))
        object.__setattr__(self, "lr_milestones",
                           tuple(_steps(m, "lr_milestones") for m in self.lr_milestones))
        self.validate()

    def in_iterations(self, train_examples):
        """A copy with every step count given in epochs ('160ep') turned into iterations.

        An epoch is ceil(train_examples / batch_size) iterations.
        """
        per_epoch = -(-train_examples // self.batch_size)

        def iterations(value):
            return round(float(value[:-2]) * per_epoch) if isinstance(value, str) else value

        return dataclasses.replace(
            self, train_steps=iterations(self.train_steps), rewind_step=iterations(self.rewind_step),
            warmup_steps=iterations(self.warmup_steps),
            lr_milestones=tuple(iterations(m) for m in self.lr_milestones))

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
        check(self.image_size == 224 or (self.dataset == data.IMAGENET and self.image_size >= 32),
              "image_size", f"must be >= 32 and only applies to {data.IMAGENET}")
        check(self.rounds >= 0, "rounds", "must be >= 0")
        check(0 < self.prune_fraction < 1, "prune_fraction", "must be in (0, 1)")
        check(self.output_prune_fraction is None or 0 <= self.output_prune_fraction < 1,
              "output_prune_fraction", "must be in [0, 1)")
        check(self.prune_scope in SCOPES, "prune_scope",
              f"must be one of {', '.join(SCOPES)}")
        check(self.prune_criterion in CRITERIA, "prune_criterion",
              f"must be one of {', '.join(CRITERIA)}")
        check(self.conv_prune_fraction is None or 0 <= self.conv_prune_fraction < 1,
              "conv_prune_fraction", "must be in [0, 1)")
        check(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        check(0 < self.final_sparsity < 1, "final_sparsity", "must be in (0, 1)")
        check(self.power > 0, "power", "must be > 0")
        check(self.structure in STRUCTURES, "structure", f"must be one of {', '.join(STRUCTURES)}")
        check(self.structure_norm in STRUCTURE_NORMS, "structure_norm",
              f"must be one of {', '.join(STRUCTURE_NORMS)}")
        check(len(self.block_shape) == 2 and all(isinstance(b, int) and b > 0 for b in self.block_shape),
              "block_shape", "must be two positive sizes like 1x4")
        check(self.block_pooling in BLOCK_POOLINGS, "block_pooling",
              f"must be one of {', '.join(BLOCK_POOLINGS)}")
        check(len(self.n_of_m) == 2 and all(isinstance(v, int) for v in self.n_of_m)
              and 0 < self.n_of_m[0] < self.n_of_m[1], "n_of_m", "must be N,M with 0 < N < M")
        check(self.prune_scope == "layer" or self.structure in GLOBAL_STRUCTURES, "prune_scope",
              f"global scope compares scores across tensors, which only makes sense for "
              f"structure {' or '.join(GLOBAL_STRUCTURES)} (structure is {self.structure})")
        check(all(c in CONTROLS for c in self.controls), "controls",
              f"must be names from {', '.join(CONTROLS)}")
        check(not ("one_shot" in self.controls and self.structure == "n_of_m"), "controls",
              "one_shot cannot reach an N:M pattern at a given density; drop it or the n_of_m structure")
        check(self.replicates >= 1, "replicates", "must be >= 1")
        check(self.reset in RESETS, "reset", f"must be one of {', '.join(RESETS)}")
        iterations = all(isinstance(v, int) for v in
                         (self.train_steps, self.rewind_step, self.warmup_steps, *self.lr_milestones))
        check(_positive(self.train_steps), "train_steps", "must be > 0")
        check(not iterations or 0 <= self.rewind_step <= self.train_steps, "rewind_step",
              f"must be in [0, train_steps={self.train_steps}]")
        check(self.reset == "rewind" or self.rewind_step == 0, "rewind_step",
              "is only used with --reset=rewind")
        check(not iterations or 0 <= self.warmup_steps <= self.train_steps, "warmup_steps",
              f"must be in [0, train_steps={self.train_steps}]")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(self.batch_size > 0, "batch_size", "must be > 0")
        check(self.optimizer in OPTIMIZERS, "optimizer",
              f"must be one of {', '.join(OPTIMIZERS)}")
        check(self.learning_rate > 0, "learning_rate", "must be > 0")
        check(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        check(not iterations or (all(0 < m < self.train_steps for m in self.lr_milestones)
                                 and list(self.lr_milestones) == sorted(set(self.lr_milestones))),
              "lr_milestones", "must be increasing iterations inside (0, train_steps)")
        check(0 < self.lr_gamma <= 1, "lr_gamma", "must be in (0, 1]")
        check(self.eval_every > 0, "eval_every", "must be > 0")
        check(self.eval_batch_size > 0, "eval_batch_size", "must be > 0")
        check(self.checkpoint_every > 0, "checkpoint_every", "must be > 0")
        check(self.steps_per_call > 0, "steps_per_call", "must be > 0")
        check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        check(self.strategy in STRATEGIES, "strategy", f"must be one of {', '.join(STRATEGIES)}")
        check(self.seed >= 0, "seed", "must be >= 0")
        check(self.data_seed is None or self.data_seed >= 0, "data_seed", "must be >= 0")
        check(self.on_nan in ON_NAN, "on_nan", f"must be one of {', '.join(ON_NAN)}")

    @property
    def resolved_output_prune_fraction(self):
        """The output layer's rate: as given, or half of prune_fraction (the paper's rule)."""
        if self.output_prune_fraction is None:
            return self.prune_fraction / 2
        return self.output_prune_fraction

    def training(self):
        """The TrainingConfig part (step counts must be in iterations: see in_iterations)."""
        return TrainingConfig(
            train_steps=self.train_steps, batch_size=self.batch_size, optimizer=self.optimizer,
            learning_rate=self.learning_rate, momentum=self.momentum, nesterov=self.nesterov,
            lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma,
            warmup_steps=self.warmup_steps, weight_decay=self.weight_decay, augment=self.augment,
            eval_every=self.eval_every, eval_batch_size=self.eval_batch_size,
            checkpoint_every=self.checkpoint_every, steps_per_call=self.steps_per_call,
            jit_compile=self.jit_compile,
            data_seed=self.seed if self.data_seed is None else self.data_seed)

    def pruning(self):
        """The PruningConfig part."""
        return PruningConfig(
            fraction=self.prune_fraction, output_fraction=self.resolved_output_prune_fraction,
            conv_fraction=self.conv_prune_fraction, scope=self.prune_scope,
            criterion=self.prune_criterion, structure=self.structure,
            structure_norm=self.structure_norm, block_shape=self.block_shape,
            block_pooling=self.block_pooling, n_of_m=self.n_of_m, schedule=self.schedule,
            final_sparsity=self.final_sparsity, power=self.power, exclude=self.exclude,
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
        defaults = ExperimentConfig.__dataclass_fields__
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RESULT_FIELDS
                and not (k in LATER_FIELDS and v == defaults[k].default)}

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
