"""Experiment settings in groups (data, model, training, pruning, lottery, run), each field declared once.

Every field is a `settings.setting` with its flag name, help and checks; the
flags, the folder hash and config.json use the flat names. Choices come from
the registries of each axis. Nothing here imports TensorFlow.
"""

import dataclasses
import hashlib
import json
import pathlib

from tf_lottery import bounds
from tf_lottery import controls
from tf_lottery import data
from tf_lottery import models
from tf_lottery import pruning
from tf_lottery import schedules
from tf_lottery.bounds import (MAX_ITERATIONS, MAX_SEED, MAX_SIZE, at_most, over, positive, unit_interval,
                               within)
from tf_lottery.rounds import ON_NAN
from tf_lottery.settings import ConfigError, Settings, flag_fields, flag_name, setting

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "TrainingConfig", "PruningConfig",
           "LotteryConfig", "RunConfig", "ExperimentConfig"]

RESETS = ("init", "rewind", "lr_rewind", "finetune")
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PROGRAMS = ("imp", "train")  # what a results folder holds: IMP rounds or one dense training


def _says(dataset, attribute):
    """Whether the registered dataset's entry sets `attribute` (reads_image_files, bundled)."""
    return dataset in data.REGISTRY and bool(getattr(data.REGISTRY.get(dataset), attribute, False))


@dataclasses.dataclass(frozen=True)
class DataConfig(Settings):
    """Which data, where it is and how much of the training split is held out."""
    dataset: str = setting("mnist", "Dataset (mnist_small is bundled with the package).", "str",
                           choices=data.REGISTRY)
    data_dir: str | None = setting(
        None, "Folder with the original MNIST IDX files or CIFAR archives, or a prepared TFDS "
        "data dir (required for imagenet2012).", "str", result=False)
    validation_size: int = setting(5000, "Training examples held out for validation (early stopping).",
                                   "int", check=(lambda v: v >= 0, "must be >= 0"))
    image_size: int = setting(224, "Side of the square images: imagenet2012's crops, and the size "
                              "image_folder resizes to when its images differ in size.", "int",
                              later=True)
    train_size: int | None = setting(
        None, "Train on a seeded subset of this many training examples (after the validation "
        "hold-out; default: all of them).", "int", check=(lambda v: v >= 1, "must be >= 1"), later=True)
    input_scaling: str = setting(
        "standardize", "How uint8 images become inputs: standardize ((x/255 - mean)/std with the "
        "training split's pixel moments, as OpenLTH), unit_norm (each image scaled to unit L2 norm, as "
        "the LTH authors' keras.utils.normalize) or unit_range (x/255).", "str",
        choices=tuple(data.INPUT_SCALINGS), later=True)
    image_max_bytes: int = setting(data.ImageLimits.max_bytes, "Largest image file read (bytes, in a folder "
                                   "or inflated from a zip).", "int", check=(lambda v: v >= 1, "must be >= 1"),
                                   result=False)
    image_max_ratio: float = setting(data.ImageLimits.max_ratio, "Largest compression ratio (inflated / "
                                     "stored bytes) of an image in a zip.", "float",
                                     check=(lambda v: v >= 1, "must be >= 1"), result=False)
    image_max_pixels: int = setting(data.ImageLimits.max_pixels, "Largest height x width an image's header "
                                    "may give (checked before decoding).", "int",
                                    check=(lambda v: v >= 1, "must be >= 1"), result=False)

    def check(self):
        changed = [n for n in ("image_max_bytes", "image_max_ratio", "image_max_pixels")
                   if getattr(self, n) != getattr(data.ImageLimits, n[6:])]
        if changed and not _says(self.dataset, "reads_image_files"):
            self.fail(changed[0], f"does not apply to {self.dataset} (only to datasets of image files)")
        if self.data_dir is not None and _says(self.dataset, "bundled"):
            self.fail("data_dir", f"does not apply to {self.dataset}, which comes with the package")
        if self.image_size != 224 and not (data.takes_image_size(self.dataset) and self.image_size >= 32):
            takers = [name for name in data.DATASETS if data.takes_image_size(name)]
            self.fail("image_size", f"must be >= 32 and only applies to {', '.join(takers)}")
        if self.image_size**2 > self.image_max_pixels:
            self.fail("image_size", f"{self.image_size}x{self.image_size} is more than "
                                    f"image_max_pixels={self.image_max_pixels:,}")

    def image_limits(self):
        """The data.ImageLimits that image files are read within."""
        return data.ImageLimits(self.image_max_bytes, self.image_max_ratio, self.image_max_pixels)


@dataclasses.dataclass(frozen=True)
class ModelConfig(Settings):
    """Which zoo network."""
    name: str = setting("lenet", "Model.", "str", flag="model", choices=models.REGISTRY)
    hidden: tuple = setting((300, 100), "LeNet hidden widths, e.g. 300,100.", "ints",
                            check=((lambda v: bool(v) and all(w > 0 for w in v),
                                    "must be positive layer widths"),
                                   (lambda v: max(v) <= MAX_SIZE, f"must be at most {MAX_SIZE:,} units")))
    width: float = setting(1.0, "Multiplier of every hidden layer's width (units, filters) of the zoo "
                           "model.", "float", check=((lambda v: v > 0, "must be > 0"),
                                                     at_most(bounds.MAX_WIDTH)), later=True)
    dropout: float = setting(0.0, "Dropout rate after each hidden dense layer (lenet, conv2/4/6).",
                             "float", check=(unit_interval(False), "must be in [0, 1)"), later=True)

    def check(self):
        if self.dropout and not models.accepts_dropout(self.name):
            takers = [name for name in models.REGISTRY.names() if models.accepts_dropout(name)]
            self.fail("dropout", f"applies to {', '.join(takers)}, not {self.name}")

    def options(self):
        """Keyword arguments of the zoo builder."""
        options = {"hidden": self.hidden} if self.name == "lenet" else {}
        if self.width != 1:
            options["width"] = self.width
        if self.dropout:
            options["dropout"] = self.dropout
        return options


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Settings):
    """How one network is trained: optimiser, schedule, batch, evaluation and checkpoint cadence."""
    train_steps: int = setting(50000, "Training length per round, in iterations (50000) or epochs "
                               "(160ep).", "steps", check=((positive, "must be > 0"),
                                                           at_most(MAX_ITERATIONS, " iterations")))
    batch_size: int = setting(60, "Training batch size (at most the training examples).", "int",
                              check=over(0, MAX_SIZE))
    optimizer: str = setting("adam", "Optimizer.", "str", choices=OPTIMIZERS)
    learning_rate: float = setting(1.2e-3, "Initial learning rate.", "float",
                                   check=(lambda v: v > 0, "must be > 0"))
    momentum: float = setting(0.9, "SGD momentum.", "float", check=(unit_interval(False), "must be in [0, 1)"))
    nesterov: bool = setting(False, "Nesterov momentum for SGD.", "bool")
    lr_milestones: tuple = setting((), "Iterations (or epochs: 80ep) at which the learning rate drops.",
                                   "steps_list")
    lr_gamma: float = setting(0.1, "Learning-rate factor at each milestone.", "float",
                              check=(unit_interval(True, False), "must be in (0, 1]"))
    warmup_steps: int = setting(0, "Linear learning-rate warmup, in iterations or epochs.", "steps")
    weight_decay: float = setting(0.0, "L2 weight decay on the effective (masked) weights.", "float",
                                  check=(lambda v: v >= 0, "must be >= 0"))
    augment: bool = setting(False, "Pad by 4, random crop and random horizontal flip (CIFAR).", "bool")
    eval_every: int = setting(100, "Evaluate every this many iterations.", "int",
                              check=over(0, MAX_ITERATIONS))
    eval_batch_size: int = setting(5000, "Evaluation batch size.", "int",
                                   check=over(0, MAX_SIZE), result=False)
    checkpoint_every: int = setting(1000, "Checkpoint every this many iterations.", "int",
                                    check=over(0, MAX_ITERATIONS), result=False)
    steps_per_call: int = setting(100, "Training steps run inside one tf.function call.", "int",
                                  check=over(0, MAX_ITERATIONS), result=False)
    jit_compile: bool | None = setting(
        None, "Compile the training step with XLA (default: yes, except convolutional networks on "
        "CPU, where TensorFlow's oneDNN kernels are faster; see benchmarks/README.md).", "bool",
        result=False)
    data_seed: int | None = setting(None, "Seed of the training data order (default: --seed).", "int",
                                    check=within(0, MAX_SEED))

    def check(self):
        steps = (self.train_steps, self.warmup_steps, *self.lr_milestones)
        if not all(isinstance(v, int) for v in steps):
            return  # epochs: checked again once in_iterations() has turned them into iterations
        if not 0 <= self.warmup_steps <= self.train_steps:
            self.fail("warmup_steps", f"must be in [0, train_steps={self.train_steps}]")
        if not (all(0 < m < self.train_steps for m in self.lr_milestones)
                and list(self.lr_milestones) == sorted(set(self.lr_milestones))):
            self.fail("lr_milestones", "must be increasing iterations inside (0, train_steps)")

    def in_iterations(self, iterations):
        """A copy with step counts in epochs turned into iterations by `iterations(value)`."""
        return dataclasses.replace(
            self, train_steps=iterations(self.train_steps), warmup_steps=iterations(self.warmup_steps),
            lr_milestones=tuple(iterations(m) for m in self.lr_milestones))


@dataclasses.dataclass(frozen=True)
class PruningConfig(Settings):
    """How each round chooses what to remove: rates or schedule, scope, criterion, structure.

    With schedule='geometric' (IMP) each round removes `fraction` of the
    remaining units of each tensor (`conv_fraction` for convolution kernels,
    `output_fraction` for the output layer, by default fraction / 2).
    'polynomial' and 'constant' are TF-MOT's PolynomialDecay and
    ConstantSparsity with rounds as steps, reaching `final_sparsity`;
    `schedule` may also be any tfmot.sparsity.keras.PruningSchedule instance.
    Layers named in `dense_layers` are never pruned (the binaries do not wrap them).
    """
    fraction: float = setting(0.2, "Fraction of the remaining weights pruned per round.", "float",
                              flag="prune_fraction", check=(unit_interval(True), "must be in (0, 1)"))
    output_fraction: float | None = setting(
        None, "Rate for the output layer (default: prune_fraction / 2).", "float",
        flag="output_prune_fraction", check=(unit_interval(False), "must be in [0, 1)"))
    scope: str = setting("layer", "How the amount is spread over tensors.", "str", flag="prune_scope",
                         choices=pruning.SCOPES)
    criterion: str = setting("magnitude", "Which units go first.", "str", flag="prune_criterion",
                             choices=pruning.CRITERIA)
    dense_layers: tuple = setting((), "Layer names never wrapped or pruned.", "strs", flag="exclude")
    conv_fraction: float | None = setting(
        None, "Rate for convolution kernels (default: --prune_fraction).", "float",
        flag="conv_prune_fraction", check=(unit_interval(False), "must be in [0, 1)"))
    schedule: object = setting(
        "geometric", "geometric (IMP: --prune_fraction of what remains per round), or TF-MOT's "
        "polynomial / constant sparsity with rounds as steps (from Python, also any TF-MOT "
        "PruningSchedule).", "str", choices=schedules.SCHEDULES)
    final_sparsity: float = setting(0.9, "Target sparsity of the polynomial and constant schedules.",
                                    "float", check=(unit_interval(True), "must be in (0, 1)"))
    power: float = setting(3.0, "Exponent of the polynomial schedule.", "float",
                           check=(lambda v: v > 0, "must be > 0"))
    structure: str = setting("unstructured", "What a unit is.", "str",
                             choices=pruning.STRUCTURES)
    structure_norm: str = setting("l1", "The norm that ranks neurons, filters and channels.", "str",
                                  choices=pruning.STRUCTURE_NORMS)
    block_shape: tuple = setting((1, 4), "Block size over the [fan_in, out] kernel view, e.g. 1x4.",
                                 "shape", check=(lambda v: len(v) == 2 and all(
                                     isinstance(b, int) and 0 < b <= MAX_SIZE for b in v),
                                     f"must be two positive sizes (at most {MAX_SIZE:,}) like 1x4"))
    block_pooling: str = setting("avg", "Magnitude of a block.", "str",
                                 choices=pruning.BLOCK_POOLINGS)
    n_of_m: tuple = setting((2, 4), "N,M: keep N of every M consecutive input weights, e.g. 2,4.",
                            "ints", check=(lambda v: len(v) == 2 and 0 < v[0] < v[1] <= MAX_SIZE,
                                           f"must be N,M with 0 < N < M <= {MAX_SIZE:,}"))
    saliency_batches: int = setting(
        2, "Training batches the snip and grasp controls score the weights on.", "int",
        check=within(1, MAX_ITERATIONS), result=False)
    grasp_temperature: float = setting(
        200.0, "The grasp control divides the logits by this before its Hessian-gradient product (Wang et "
        "al. 2020 use 200).", "float", check=(lambda v: v > 0, "must be > 0"), result=False)
    synflow_iterations: int = setting(
        100, "Pruning steps of the synflow control (the density falls exponentially over them).", "int",
        check=within(1, MAX_ITERATIONS), result=False)
    gmp_begin_step: int | None = setting(
        None, "Step at which the gmp control starts pruning (default: 10% of train_steps).", "int",
        check=within(0, MAX_ITERATIONS), result=False)
    gmp_end_step: int | None = setting(
        None, "Step at which the gmp control reaches its sparsity (default: 50% of train_steps).", "int",
        check=within(1, MAX_ITERATIONS), result=False)
    gmp_frequency: int = setting(100, "Steps between the gmp control's mask updates.", "int",
                                 check=within(1, MAX_ITERATIONS), result=False)
    early_bird_every: int = setting(100, "Iterations between the early_bird control's mask comparisons.",
                                    "int", check=within(1, MAX_ITERATIONS), result=False)
    early_bird_window: int = setting(5, "Consecutive mask distances below the threshold that draw the "
                                     "early-bird ticket.", "int", check=within(1, MAX_ITERATIONS),
                                     result=False)
    early_bird_threshold: float = setting(
        0.1, "Normalised Hamming distance between consecutive masks below which early_bird counts a "
        "mask as settled.", "float", check=(lambda v: 0 < v < 1, "must be in (0, 1)"), result=False)
    edge_popup_weights: str = setting(
        "reset_point", "The frozen weights of the edge_popup and supermask controls: the reset point's, "
        "or their signs times each tensor's standard deviation.", "str",
        choices=("reset_point", "signed_constant"), result=False)
    supermask_logit_scale: float = setting(
        100.0, "The supermask control's keep probability is sigmoid(scale * score): with the "
        "experiment's optimizer, the pace at which its probabilities move.", "float",
        check=(lambda v: v > 0, "must be > 0"), result=False)
    seed: int = setting(0, "Seed of the random criterion (the experiment's --seed).", "int", flag=False)

    def gmp_steps(self, train_steps):
        """(begin, end) steps of the gmp control for a round of `train_steps` iterations."""
        begin = train_steps // 10 if self.gmp_begin_step is None else self.gmp_begin_step
        end = train_steps // 2 if self.gmp_end_step is None else self.gmp_end_step
        return begin, end

    def check(self):
        if self.scope == "erk" and (self.conv_fraction is not None or self.output_fraction is not None):
            self.fail("scope", "erk spreads one overall density over all tensors, so "
                               "--conv_prune_fraction and --output_prune_fraction do not apply")
        if self.gmp_begin_step is not None and self.gmp_end_step is not None and (
                self.gmp_end_step <= self.gmp_begin_step):
            self.fail("gmp_end_step", f"must be after gmp_begin_step={self.gmp_begin_step}")
        if self.scope == "global" and not pruning.STRUCTURES.get(self.structure).global_scope:
            allowed = [s for s in pruning.STRUCTURES.names() if pruning.STRUCTURES.get(s).global_scope]
            self.fail("scope", f"{self.scope} scope compares scores across tensors, which only makes "
                               f"sense for structure {' or '.join(allowed)} (structure is "
                               f"{self.structure})")

    @property
    def output_rate(self):
        """The output layer's rate: as given, or half of fraction (the paper's rule)."""
        return self.fraction / 2 if self.output_fraction is None else self.output_fraction

    def fractions(self, keys, output_key=None, conv_keys=()):
        """{key: rate} for the masked weights `keys` (geometric schedule)."""
        dense, conv_keys = set(self.dense_layers), set(conv_keys)
        conv = self.fraction if self.conv_fraction is None else self.conv_fraction
        return {key: self.output_rate if key == output_key else conv if key in conv_keys
                else self.fraction
                for key in keys if key.split("/")[0] not in dense}

    def structures(self, keys, output_key=None):
        """{key: structure}; the output layer's units are classes, so neuron/filter prune it weight by weight."""
        unit_structure = self.structure in ("neuron", "filter")
        return {key: "unstructured" if unit_structure and key == output_key else self.structure
                for key in keys}

    def structure_options(self):
        """The options every structure is built from."""
        return {"structure_norm": self.structure_norm, "block_shape": self.block_shape,
                "block_pooling": self.block_pooling}


@dataclasses.dataclass(frozen=True)
class LotteryConfig(Settings):
    """The IMP rounds: how many, what the survivors are reset to, and what runs beside them."""
    rounds: int = setting(12, "Pruning rounds after the dense round 0 (at most as many as still remove "
                          "weights and leave every kernel some).", "int",
                          check=within(0, bounds.MAX_ROUNDS))
    reset: str = setting("init", "What pruned rounds start from: init (theta_0), rewind (theta_k), "
                         "lr_rewind (the trained weights, the learning-rate schedule replayed from k for "
                         "train_steps - k iterations) or finetune (the trained weights at the final "
                         "learning rate for train_steps - k iterations).", "str", choices=RESETS)
    rewind_step: int = setting(0, "k for --reset=rewind, lr_rewind and finetune, in iterations (500) or "
                               "epochs (2ep).", "steps")
    initial_mask: str | None = setting(
        None, "An .npz of 0/1 masks (e.g. a round's mask.npz) that round 0 starts from.", "str")
    controls: tuple = setting(
        (), "Controls to train on the same masks after the IMP rounds, each NAME[.DRAW][@ROUND+ROUND...]: "
        "@ limits a control to some rounds (one_shot@3+7), .DRAW is a further independent draw of a "
        "random control (random_reinit.2@7).", "strs", choices=controls.CONTROLS,
        choice_key=controls.spec_name, result=False)
    replicates: int = setting(1, "Independent runs with seeds seed, seed+1, ... (one folder each).",
                              "int", check=within(1, bounds.MAX_REPLICATES), result=False)

    def check(self):
        if self.reset == "init" and self.rewind_step != 0:
            self.fail("rewind_step", "is only used with --reset=rewind, lr_rewind or finetune")
        try:
            controls.parse_specs(self.controls, self.rounds)
        except ValueError as error:
            raise ConfigError("controls", str(error)) from None


@dataclasses.dataclass(frozen=True)
class RunConfig(Settings):
    """Seed, numerics, devices and where results go."""
    seed: int = setting(0, "Seed of initialisation, hold-out and pruning.", "int",
                        check=within(0, MAX_SEED))
    precision: str = setting("float32", "float32, mixed_float16 (with loss scaling) or "
                             "mixed_bfloat16.", "str", choices=PRECISIONS)
    strategy: str = setting("default", "default, mirrored (all local devices), multi_worker "
                            "(TF_CONFIG) or tpu.", "str", choices=STRATEGIES, result=False)
    tpu: str | None = setting(None, "TPU name or grpc:// address for --strategy=tpu.", "str",
                              result=False)
    deterministic: bool = setting(True, "Deterministic TensorFlow ops.", "bool", result=False)
    strict_numerics: bool = setting(
        False, "Refuse to resume a folder last run under another numerics identity (CPU model and "
        "features, numeric library versions, threads; see launches.json) instead of warning.", "bool",
        result=False)
    on_nan: str = setting("stop", "On a non-finite loss: stop (exit 1) or skip_round (record it, go "
                          "on).", "str", choices=ON_NAN, result=False)
    root_dir: str = setting("experiments", "Parent folder of auto-named experiment folders.", "str",
                            result=False)
    experiment_dir: str | None = setting(None, "Explicit experiment folder (overrides --root_dir).",
                                         "str", result=False)

    def check(self):
        if self.tpu is not None and self.strategy != "tpu":
            self.fail("tpu", "only applies to --strategy=tpu")


# The order of the groups is the order of the flags in --help and of config.json.
GROUPS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig,
          "pruning": PruningConfig, "lottery": LotteryConfig, "run": RunConfig}


def _flat_index():
    """{flat name: (group, field)} over every group."""
    return {flag_name(f): (group, f) for group, cls in GROUPS.items() for f in flag_fields(cls)}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the six groups of settings; flat names (flags, config.json) map onto them."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    pruning: PruningConfig = PruningConfig()
    lottery: LotteryConfig = LotteryConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        for group, cls in GROUPS.items():
            if not isinstance(getattr(self, group), cls):
                raise TypeError(f"ExperimentConfig.{group} must be a {cls.__name__}")
        lottery = self.lottery
        for name in dict.fromkeys(map(controls.spec_name, lottery.controls)):
            reason = controls.CONTROLS.get(name).refuse(self)
            if reason:
                raise ConfigError("controls", f"{reason}, got {lottery.controls!r}")
        bounds.check_config(self)

    @classmethod
    def from_flat(cls, values=None, **more):
        """The config of flat values {flag name: value} (e.g. config.json); unknown names are a ConfigError."""
        values = {**(values or {}), **more}
        index = _flat_index()
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise ConfigError(unknown[0], "unknown setting")
        groups = {group: {} for group in GROUPS}
        for name, value in values.items():
            group, field = index[name]
            groups[group][field.name] = value
        built = {}
        for group, kwargs in groups.items():
            try:
                built[group] = GROUPS[group](**kwargs)
            except TypeError as error:
                raise ConfigError(group, str(error)) from None
        return cls(**built)

    from_dict = from_flat

    def flat(self):
        """{flag name: JSON-ready value} over every group (what config.json holds)."""
        values = {}
        for group in GROUPS:
            values.update(getattr(self, group).flat())
        return values

    to_dict = flat

    def replace(self, **values):
        """A copy with flat values replaced (checked like a new config)."""
        return ExperimentConfig.from_flat({**self.flat(), **values})

    def in_iterations(self, train_examples):
        """A copy with every step count given in epochs ('160ep') turned into iterations.

        An epoch is ceil(train_examples / batch_size) iterations.
        """
        per_epoch = -(-train_examples // self.training.batch_size)

        def iterations(value):
            return round(float(value[:-2]) * per_epoch) if isinstance(value, str) else value

        return dataclasses.replace(
            self, training=self.training.in_iterations(iterations),
            lottery=dataclasses.replace(self.lottery, rewind_step=iterations(self.lottery.rewind_step)))

    def resolved_training(self):
        """The TrainingConfig with the data order seed resolved (default: the run's seed)."""
        if self.training.data_seed is not None:
            return self.training
        return dataclasses.replace(self.training, data_seed=self.run.seed)

    def resolved_pruning(self):
        """The PruningConfig with the run's seed (for the random criterion)."""
        return dataclasses.replace(self.pruning, seed=self.run.seed)

    def result_fields(self):
        """The flat values that change results (the ones the hash and the resume check use)."""
        values = {}
        for group, cls in GROUPS.items():
            settings = getattr(self, group)
            flat = settings.flat()
            for field in flag_fields(cls):
                name = flag_name(field)
                if not field.metadata["result"]:
                    continue
                if field.metadata["later"] and getattr(settings, field.name) == field.default:
                    continue
                values[name] = flat[name]
        return values

    def config_hash(self):
        """A short stable hash of result_fields()."""
        text = json.dumps(self.result_fields(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def name(self, program="imp"):
        """Readable folder name: program (imp or train), model, dataset, reset and the hash."""
        parts = [program, self.model.name, self.data.dataset]
        if program == "imp":
            lottery = self.lottery
            parts.append(lottery.reset if lottery.reset == "init" else f"{lottery.reset}{lottery.rewind_step}")
        return "_".join(parts + [self.config_hash()])

    def directory(self, program="imp"):
        """experiment_dir if set, else root_dir/name(program)."""
        if self.run.experiment_dir:
            return pathlib.Path(self.run.experiment_dir)
        return pathlib.Path(self.run.root_dir) / self.name(program)
