"""The paper's controls as branches of the round loop, one registered class each.

- random_reinit: round r's mask, weights from a fresh draw of the initialiser.
- random_prune: a random mask with round r's per-tensor counts (of units, for
  structured pruning), from the experiment's reset point (theta_0 or theta_k).
- one_shot: pruned in one step from the trained round-0 weights to round r's
  per-tensor sparsity, then reset to the reset point.
- snip, grasp, synflow: pruned before training, at the reset point, to round
  r's per-tensor sparsity by the scores of tf_lottery.pruning.saliency (SNIP
  and GraSP on the first --saliency_batches training batches; SynFlow on no
  data, in --synflow_iterations steps), then trained once.
- reshuffle: round r's mask, its surviving reset-point values permuted
  within each tensor; signed_constant: round r's mask, each survivor set to
  its reset-point sign times the tensor's reset-point standard deviation
  (Zhou et al. 2019).
- edge_popup: a mask at round r's per-tensor density learned by scores on
  the frozen reset-point weights (or their signed constants), Ramanujan et
  al. 2020; the weights never train.
- supermask: the same with Zhou et al. 2019's Bernoulli supermask (masks
  sampled from learned probabilities; the ticket is the most probable
  weights at round r's density).
- gmp: gradual magnitude pruning during one training run from the reset
  point, on TF-MOT's PolynomialDecay, to round r's per-tensor sparsity.
- early_bird: trained densely from the reset point until the magnitude
  mask at round r's sparsity stops changing, then that mask is reset and
  trained (the search's distances in the round's search.json).

Each control trains IMP rounds 1..R into `controls/NAME/round_XX` with the
same files as the IMP rounds, and its records go to summary.json under
`controls.NAME`. A new control is one `@CONTROLS.register(name)` class.

A control is named by a spec `NAME[.DRAW][@ROUND+ROUND...]`: `@` limits it to
some rounds, `.DRAW` (2, 3, ...) is a further independent draw of a random
control, trained into `controls/NAME.DRAW` (the paper's three
reinitialisations per ticket: `random_reinit`, `random_reinit.2@7+12`,
`random_reinit.3@7+12`).
"""

import dataclasses
import re
import time

import numpy as np
from etils import epy

from tf_lottery import atomic
from tf_lottery import results
from tf_lottery import rounds as round_loop
from tf_lottery.registry import Registry
from tf_lottery.settings import ConfigError

with epy.lazy_imports():  # config reads the registry before TensorFlow may load
    import keras
    import tensorflow_model_optimization as tfmot

    from tf_lottery import edge_popup
    from tf_lottery import supermask
    from tf_lottery import model_ops
    from tf_lottery import training
    from tf_lottery import pruning
    from tf_lottery.pruning import saliency
    from tf_lottery.results import checkpoints

CONTROLS = Registry("control")

# What finding a control's mask costs before its own training (tf_lottery.taxonomy counts it):
FINDS_FREE = "free"              # nothing (a random mask)
FINDS_BY_IMP = "imp"             # IMP's rounds before it: it trains on IMP's mask
FINDS_BY_ROUND_0 = "round_0"     # the dense round 0's training
FINDS_BY_SEARCH = "search"       # a search, recorded in the round's search.json
FINDS_BY_TRAINING = "training"   # its own training, which is what finds the mask

# Bases of the controls' random draws, offset by the experiment's seed and the round.
_REINIT_SEED = 10_000
_RANDOM_MASK_SEED = 20_000
_RESHUFFLE_SEED = 30_000
_EDGE_POPUP_SEED = 40_000
_SUPERMASK_SEED = 50_000


_SPEC = re.compile(r"([A-Za-z_]\w*)(?:\.(\d+))?(?:@(\d+(?:\+\d+)*))?")


@dataclasses.dataclass(frozen=True)
class ControlSpec:
    """One entry of --controls: a registered control, which draw of it, and on which rounds."""
    name: str
    draw: int = 1
    rounds: tuple = ()  # empty: every round

    @property
    def branch(self):
        """The control's folder and summary.json name: NAME, or NAME.DRAW for a further draw."""
        return self.name if self.draw == 1 else f"{self.name}.{self.draw}"

    def round_indices(self, rounds):
        """The IMP rounds (of 0..rounds) this control trains on."""
        if self.rounds:
            return [r for r in self.rounds if r <= rounds]
        return list(range(CONTROLS.get(self.name).first_round, rounds + 1))


def spec_name(text):
    """The registered name a spec refers to (what --controls checks against the registry)."""
    return str(text).split("@")[0].split(".")[0]


def parse_spec(text):
    """The ControlSpec of `NAME[.DRAW][@ROUND+ROUND...]`; ValueError says what is wrong."""
    match = _SPEC.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not NAME[.DRAW][@ROUND+ROUND...]")
    name, draw, rounds = match.groups()
    draw = int(draw) if draw else 1
    if draw < 1:
        raise ValueError(f"{text!r}: draws count from 1")
    if draw > 1 and not getattr(CONTROLS.get(name), "random", False):
        raise ValueError(f"{text!r}: {name} draws nothing at random, so it has no further draws")
    rounds = tuple(sorted({int(r) for r in rounds.split("+")})) if rounds else ()
    return ControlSpec(name, draw, rounds)


def parse_specs(texts, rounds=None):
    """ControlSpecs of --controls, refusing a branch named twice and rounds outside 1..rounds."""
    specs = [parse_spec(text) for text in texts]
    seen = set()
    for text, spec in zip(texts, specs):
        if spec.branch in seen:
            raise ValueError(f"{spec.branch} is listed twice (a further draw is {spec.name}.2)")
        seen.add(spec.branch)
        outside = [r for r in spec.rounds if r < 1 or (rounds is not None and r > rounds)]
        if outside:
            raise ValueError(f"{text!r}: controls run on rounds 1..{rounds}, not {outside[0]}")
    return specs


def draw_seed(base, seed, round_index, draw=1):
    """The seed of a control's draw for (experiment seed, round, draw), distinct for every triple.

    Rounds below 100 keep the seeds of results written before: base + 100 *
    seed + round. Later rounds take seeds from 2**30 up (rounds < 4096),
    which base + 100 * seed + round never reaches for seeds below 10 million.
    Further draws (2, 3, ...) take their seeds from a SeedSequence of all four.
    """
    if draw > 1:
        return int(np.random.SeedSequence([base, seed, round_index, draw]).generate_state(1)[0] >> 1)
    if round_index < 100:
        return base + 100 * seed + round_index
    return (1 << 30) + ((base // 10_000) << 26) + (seed << 12) + round_index


class Control(round_loop.Branch):
    """A control: trains IMP rounds 1..R of the experiment with another mask or other weights."""

    first_round = 1
    random = False  # whether the control draws at random (then it takes further draws: NAME.2)
    label = None    # its name in tables (default: the registered name)
    finds = FINDS_FREE  # what finding its mask costs (one of the FINDS_ constants)
    spec = None     # the ControlSpec it runs under (run_controls sets it)
    # The PruningConfig settings the control reads: they decide what its rounds compute, so they are
    # recorded in its folder (controls/NAME/control.json) and a resume with other values is refused.
    settings = ()

    @classmethod
    def refuse(cls, config):
        """Why the control cannot run in ExperimentConfig `config` (a sentence), or None."""
        return None

    @property
    def draw(self):
        return self.spec.draw if self.spec else 1

    def round_indices(self):
        if self.spec:
            return self.spec.round_indices(self.context.rounds)
        return super().round_indices()

    def imp_mask(self, round_index):
        """The mask of IMP round `round_index`, which must be finished."""
        directory = results.round_dir(self.context.experiment_dir, round_index)
        if not results.is_finished(directory):
            raise FileNotFoundError(f"{directory}: round {round_index} of the IMP experiment is not "
                                    "finished; run its rounds before the controls")
        return results.round_masks(self.context.experiment_dir, round_index, field="controls")

    def write_search(self, round_index, record):
        """Writes the round's search.json: what finding its mask cost (and found)."""
        path = results.search_path(results.round_dir(self.context.experiment_dir, round_index, self.name))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, record)

    def imp_densities(self, round_index):
        """{key: fraction of units} IMP's round `round_index` keeps, per tensor."""
        structures, options = self.context.structures(), self.context.pruning_config.structure_options()
        target = self.imp_mask(round_index)
        return {k: pruning.unit_density(target[k], structures[k], **options) for k in target}

    def from_trained_dense(self, masks_from_weights, round_index):
        """Round 0's trained weights with the masks `masks_from_weights(model)` gives, then reset."""
        context = self.context
        checkpoints.restore_model(context.model, results.round_dir(context.experiment_dir, 0))
        model_ops.set_masks(context.model, masks_from_weights(context.model))
        context.reset_point.restore()


@CONTROLS.register("random_reinit", help="IMP's mask, weights from a fresh draw of the initialiser")
class RandomReinit(Control):
    """IMP's mask of round r on a fresh draw of the initialiser."""

    random, label, finds = True, "IMP mask, reinitialised", FINDS_BY_IMP

    def __init__(self, context, name):
        super().__init__(context, name)
        if context.build_model is None:
            raise ValueError("random_reinit needs build_model(seed) to draw fresh weights")

    def _draw(self, round_index):
        return self.context.build_model(
            draw_seed(_REINIT_SEED, self.context.pruning_config.seed, round_index, self.draw))

    def start(self, round_index, records):
        # The draw is copied into the experiment's model (weights and snapshots), so the compiled
        # step is shared; IMP's next round restores its own weights from its checkpoint.
        with self.context.strategy.scope():
            model_ops.copy_weights(self._draw(round_index), self.context.model)
        model_ops.set_masks(self.context.model, self.imp_mask(round_index))


@CONTROLS.register("random_prune", help="a random mask with IMP's per-tensor counts, from the reset point")
class RandomPrune(Control):
    """A random mask with the per-tensor unit counts of IMP's round r, from the reset point."""

    random, label = True, "random pruning"

    def start(self, round_index, records):
        masks = random_prune_masks(self.context.pruning_config, self.imp_mask(round_index),
                                   self.context.structures(), round_index, self.draw)
        self.from_trained_dense(lambda model: masks, round_index)


def random_prune_masks(pruning_config, imp_masks, structures, round_index, draw=1):
    """{key: numpy 0/1 array}: random_prune's mask of IMP round `round_index` (draw `draw`): as many live
    units per tensor as `imp_masks`, drawn from the seed of (experiment seed, round, draw)."""
    seed = draw_seed(_RANDOM_MASK_SEED, pruning_config.seed, round_index, draw)
    masks = pruning.random_like(imp_masks, seed=seed, structure=structures,
                                **pruning_config.structure_options())
    return {k: v.numpy() for k, v in masks.items()}


@CONTROLS.register("one_shot", help="round 0's trained weights pruned at once to IMP's sparsity, then reset")
class OneShot(Control):
    """Round 0's trained weights pruned in one step to round r's per-tensor sparsity, then reset."""

    label, finds = "one-shot magnitude", FINDS_BY_ROUND_0

    @classmethod
    def refuse(cls, config):
        if config.pruning.structure == "n_of_m":
            return "one_shot cannot reach an N:M pattern at a given density; drop it or the n_of_m structure"
        return None

    def start(self, round_index, records):
        densities = self.imp_densities(round_index)

        def one_shot(model):
            ones = {k: np.ones_like(v) for k, v in model_ops.get_masks(model).items()}
            return _prune_to(self.context, model_ops.raw_weights(model), ones, densities)

        self.from_trained_dense(one_shot, round_index)


class TicketValues(Control):
    """IMP's round-r mask on values derived from the reset point's, tensor by tensor."""

    finds = FINDS_BY_IMP

    def values(self, weight, mask, round_index, index):
        """The new values of one tensor (only the positions `mask` keeps matter)."""
        raise NotImplementedError

    def start(self, round_index, records):
        context = self.context
        context.reset_point.restore()
        masks = self.imp_mask(round_index)
        model_ops.set_masks(context.model, masks)
        for index, (key, weight, _) in enumerate(sorted(model_ops.masked_weights(context.model),
                                                        key=lambda item: item[0])):
            weight.assign(self.values(np.asarray(weight.numpy()), masks[key] == 1, round_index, index))


@CONTROLS.register("reshuffle", help="IMP's mask, the surviving reset-point values permuted within each "
                                     "tensor (Zhou et al. 2019)")
class Reshuffle(TicketValues):
    random, label = True, "IMP mask, reshuffled"

    def values(self, weight, kept, round_index, index):
        seed = draw_seed(_RESHUFFLE_SEED, self.context.pruning_config.seed, round_index, self.draw)
        new = weight.copy()
        new[kept] = np.random.default_rng([seed, index]).permutation(weight[kept])
        return new


@CONTROLS.register("signed_constant", help="IMP's mask, each survivor its reset-point sign times the "
                                           "tensor's standard deviation (Zhou et al. 2019)")
class SignedConstant(TicketValues):
    label = "IMP mask, signed constant"

    def values(self, weight, kept, round_index, index):
        new = weight.copy()
        new[kept] = np.sign(weight[kept]) * np.std(weight)
        return new.astype(weight.dtype)


@CONTROLS.register("edge_popup", help="a mask at IMP's density learned by scores on the frozen reset-point "
                                      "weights, which never train (Ramanujan et al. 2020)")
class EdgePopup(Control):
    """Scores trained on frozen weights; the top |score| fraction of each tensor is its mask.

    The control trains its own copy of the network (edge_popup.wrap of the
    reset point), so its compiled step is its own; the scores are redrawn
    (He uniform, seeded by round and draw) at the start of every round, the
    weights are the reset point's or, with --edge_popup_weights=signed_constant,
    their signs times each tensor's standard deviation.
    """

    random, label, finds = True, "edge-popup", FINDS_BY_TRAINING
    method, seed_base = "edge_popup", _EDGE_POPUP_SEED
    settings = ("edge_popup_weights",)

    @classmethod
    def refuse(cls, config):
        if config.pruning.structure != "unstructured":
            return f"{cls.method} chooses single weights; use --structure=unstructured"
        if config.run.strategy != "default":
            return f"{cls.method} trains on one device; use --strategy=default"
        return None

    def model_for(self, round_index):
        if getattr(self, "_built", None) is None:
            context = self.context
            _dense_from_reset_point(context)
            model = self.wrap(model_ops.strip(context.model), exclude=context.pruning_config.dense_layers)
            trainer = training.Trainer(model, context.splits, context.training_config, context.strategy,
                                       context.objective)
            self._built = (model, trainer, model_ops.raw_weights(model))
        return self._built[:2]

    def wrap(self, plain, exclude):
        return edge_popup.wrap(plain, exclude=exclude)

    def start_scores(self, model, densities, seed):
        for index, (key, (score, density)) in enumerate(sorted(edge_popup.scores(model).items())):
            score.assign(keras.initializers.HeUniform(seed=seed + index)(score.shape))
            density.assign(densities[key])

    def start(self, round_index, records):
        model, _ = self.model_for(round_index)
        config = self.context.pruning_config
        self.start_scores(model, self.imp_densities(round_index),
                          draw_seed(self.seed_base, config.seed, round_index, self.draw))
        theta = self._built[2]
        for key, weight, _ in model_ops.masked_weights(model):
            value = theta[key]
            if config.edge_popup_weights == "signed_constant":
                value = (np.sign(value) * np.std(value)).astype(value.dtype)
            weight.assign(value)


@CONTROLS.register("supermask", help="a mask at IMP's density sampled from learned Bernoulli probabilities "
                                     "on the frozen reset-point weights (Zhou et al. 2019)")
class Supermask(EdgePopup):
    """Zhou et al.'s Bernoulli supermask (tf_lottery.supermask) in place of edge-popup's top-k.

    Like edge_popup: its own copy of the network, the weights frozen at the
    reset point (or their signed constants), the scores restarted every round
    (at logit(density)), the samples seeded by round and draw.
    """

    method, seed_base, label = "supermask", _SUPERMASK_SEED, "Bernoulli supermask"
    settings = ("edge_popup_weights", "supermask_logit_scale")

    def wrap(self, plain, exclude):
        return supermask.wrap(plain, exclude=exclude, logit_scale=self.context.pruning_config.supermask_logit_scale)

    def start_scores(self, model, densities, seed):
        supermask.start(model, densities, seed)


class BeforeTraining(Control):
    """Pruned at the reset point (theta_0 or theta_k) by a score, to round r's per-tensor sparsity."""

    finds = FINDS_BY_SEARCH

    def start(self, round_index, records):
        context = self.context
        _dense_from_reset_point(context)
        start = time.perf_counter()
        model_ops.set_masks(context.model, self.masks(self.imp_densities(round_index)))
        self.write_search(round_index, {"find_iterations": 0, "find_seconds": time.perf_counter() - start,
                                        **self.search_cost()})
        context.reset_point.restore()

    def search_cost(self):
        """What the scores read, for search.json."""
        return {"scored_batches": self.context.pruning_config.saliency_batches}

    def prune(self, scores, masks, densities):
        return _prune_to(self.context, scores, masks, densities)

    def masks(self, densities):
        """The masks at `densities`, from the dense model at the reset point."""
        raise NotImplementedError


@CONTROLS.register("snip", help="pruned before training by |g * w| on a few batches (Lee et al. 2019)")
class Snip(BeforeTraining):
    settings = ("saliency_batches",)
    label = "SNIP"

    def masks(self, densities):
        context = self.context
        batches = context.trainer.first_batches(context.pruning_config.saliency_batches)
        scores = saliency.snip(context.model, batches, context.trainer.loss)
        return self.prune(scores, model_ops.get_masks(context.model), densities)


@CONTROLS.register("grasp", help="pruned before training by w * Hg, keeping gradient flow (Wang et al. "
                                 "2020); unstructured only")
class Grasp(BeforeTraining):
    settings = ("grasp_temperature", "saliency_batches")
    label = "GraSP"

    @classmethod
    def refuse(cls, config):
        if config.pruning.structure != "unstructured":
            return "grasp's scores are signed, so they rank single weights only; use --structure=unstructured"
        return None

    def masks(self, densities):
        context = self.context
        batches = context.trainer.first_batches(context.pruning_config.saliency_batches)
        temperature = context.pruning_config.grasp_temperature
        scores = saliency.grasp(context.model, batches,
                                lambda labels, outputs: context.trainer.loss(labels, outputs / temperature))
        # Shifted to be >= 0 (the pruning criterion ranks magnitudes), one shift for all tensors so
        # a global scope compares them as they were.
        low = min(float(v.min()) for v in scores.values())
        return self.prune({k: v - low for k, v in scores.items()}, model_ops.get_masks(context.model),
                          densities)


@CONTROLS.register("synflow", help="pruned before training by iterative synaptic flow, without data "
                                   "(Tanaka et al. 2020)")
class Synflow(BeforeTraining):
    settings = ("synflow_iterations",)
    label = "SynFlow"

    def search_cost(self):
        return {"scored_batches": 0, "synflow_iterations": self.context.pruning_config.synflow_iterations}

    def masks(self, densities):
        model, steps = self.context.model, self.context.pruning_config.synflow_iterations
        masks = model_ops.get_masks(model)
        for step in range(1, steps + 1):
            # The density falls exponentially to the target over the iterations.
            masks = self.prune(saliency.synflow(model), masks,
                               {k: d ** (step / steps) for k, d in densities.items()})
            model_ops.set_masks(model, masks)
        return masks


def _prune_to(context, scores, masks, densities, step=0):
    """`masks` pruned to `densities` by the largest `scores`, with the experiment's scope and structure."""
    config = context.pruning_config
    new = pruning.prune(scores, masks, densities=densities, scope=config.scope,
                        structure=context.structures(), n_of_m=config.n_of_m, seed=config.seed + step,
                        **config.structure_options())
    return {k: v.numpy() for k, v in new.items()}


def _prune_by_magnitude(context, masks, densities, step=0):
    return _prune_to(context, model_ops.effective_weights(context.model), masks, densities, step)


def _dense_from_reset_point(context):
    model_ops.set_masks(context.model, {k: np.ones_like(v)
                                        for k, v in model_ops.get_masks(context.model).items()})
    context.reset_point.restore()


@CONTROLS.register("gmp", help="gradual magnitude pruning in one training run from the reset point, on "
                               "TF-MOT's PolynomialDecay (Zhu & Gupta 2017)")
class GradualMagnitude(Control):
    """Trained once from the reset point, pruned by magnitude on the way to round r's sparsity.

    The overall sparsity follows TF-MOT's PolynomialDecay (power 3) from 0 at
    --gmp_begin_step to round r's at --gmp_end_step, every --gmp_frequency
    steps, and the end step prunes to the target even when it is not a
    multiple of the frequency from the begin step; each tensor reaches its
    own IMP sparsity in proportion.
    """

    label, finds = "gradual magnitude pruning", FINDS_BY_TRAINING
    settings = ("gmp_begin_step", "gmp_end_step", "gmp_frequency")

    @classmethod
    def refuse(cls, config):
        steps = config.training.train_steps
        if isinstance(steps, int) and config.pruning.gmp_steps(steps)[1] > steps:
            return f"gmp ends pruning at step {config.pruning.gmp_steps(steps)[1]}, after train_steps={steps}"
        return None

    def start(self, round_index, records):
        _dense_from_reset_point(self.context)

    def schedule_steps(self, round_index):
        """{TF-MOT step: {key: density}} of the round's mask updates."""
        config, steps = self.context.pruning_config, self.context.training_config.train_steps
        begin, end = config.gmp_steps(steps)
        densities = self.imp_densities(round_index)
        final = 1.0 - float(np.mean(list(densities.values()))) if densities else 0.0
        final = min(max(final, 1e-6), 0.999999)
        schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, final, begin, end,
                                                        frequency=config.gmp_frequency)
        updates = {}
        for step in range(max(begin, 1), min(end, steps) + 1):
            should_prune, sparsity = schedule(step)
            if bool(should_prune):
                share = float(sparsity) / final
                updates[step] = {k: 1.0 - share * (1.0 - d) for k, d in densities.items()}
        # TF-MOT prunes only every `frequency` steps from begin; the end step always reaches the target.
        updates[min(end, steps)] = dict(densities)
        return updates

    def hooks(self, round_index):
        def prune(iteration, densities):
            masks = model_ops.get_masks(self.context.model)
            model_ops.set_masks(self.context.model,
                                _prune_by_magnitude(self.context, masks, densities, iteration))

        # A step's update runs before the step, after `step - 1` iterations.
        return {step - 1: (lambda it, d=densities: prune(it, d))
                for step, densities in self.schedule_steps(round_index).items()}


def early_bird_draw(distances, window=5, threshold=0.1):
    """The index of the distance at which the ticket is drawn: the first where the last `window`
    distances are all below `threshold`; None if that never happens."""
    for i in range(window - 1, len(distances)):
        if all(d < threshold for d in distances[i - window + 1:i + 1]):
            return i
    return None


def mask_distance(a, b):
    """Normalised Hamming distance between two mask dicts: the share of pruned-tensor positions that differ."""
    differ = sum(int(np.sum(a[k] != b[k])) for k in a)
    return differ / sum(int(np.size(a[k])) for k in a)


@CONTROLS.register("early_bird", help="trained densely from the reset point until the magnitude mask at "
                                      "IMP's sparsity settles, then that ticket reset and trained (You et "
                                      "al. 2020)")
class EarlyBird(Control):
    """The early-bird ticket of round r's sparsity, reset to the reset point and trained.

    The search trains the dense network from the reset point, takes the
    magnitude mask at round r's per-tensor densities every --early_bird_every
    iterations and the normalised Hamming distance to the previous one, and
    draws the ticket when the last --early_bird_window distances are below
    --early_bird_threshold (or at the end of training). The search is not
    checkpointed: it is deterministic, so an interrupted one is rerun.
    """

    label, finds = "early-bird", FINDS_BY_SEARCH
    settings = ("early_bird_every", "early_bird_window", "early_bird_threshold")

    def start(self, round_index, records):
        context, config = self.context, self.context.pruning_config
        densities = self.imp_densities(round_index)
        _dense_from_reset_point(context)
        ones = model_ops.get_masks(context.model)
        found = {"distances": [], "masks": None, "drawn_at": None}

        def check(iteration):
            masks = _prune_by_magnitude(context, ones, densities)
            if found["masks"] is not None:
                found["distances"].append([iteration, mask_distance(masks, found["masks"])])
            found["masks"] = masks
            if early_bird_draw([d for _, d in found["distances"]], config.early_bird_window,
                               config.early_bird_threshold) is not None:
                found["drawn_at"] = iteration
                context.model.stop_training = True

        every, steps = config.early_bird_every, context.training_config.train_steps
        start = time.perf_counter()
        context.trainer.train(hooks={i: check for i in range(every, steps + 1, every)},
                              name=f"{self.log_name(round_index)} search")
        drawn_at = found["drawn_at"]
        self.write_search(round_index, {
            "find_iterations": steps if drawn_at is None else drawn_at,
            "find_seconds": time.perf_counter() - start, "drawn_at": drawn_at,
            "converged": drawn_at is not None, "every": every, "window": config.early_bird_window,
            "threshold": config.early_bird_threshold, "distances": found["distances"]})
        model_ops.set_masks(context.model, found["masks"] if found["masks"] is not None else
                            _prune_by_magnitude(context, ones, densities))
        context.reset_point.restore()



def settings_of(name, pruning_config):
    """{setting: value} of the settings the control of branch `name` reads ({} for an unknown one)."""
    family = spec_name(name)
    if family not in CONTROLS:
        return {}
    return {field: getattr(pruning_config, field) for field in CONTROLS.get(family).settings}


def check_settings(experiment_dir, names, pruning_config, saved=None, every_branch=False):
    """Refuses (ConfigError naming the setting) to train in `experiment_dir` with control settings that
    differ from the ones its control rounds were trained with.

    The controls of `names` are checked, and with `every_branch` every
    control branch in the folder too (a run that rewrites config.json must
    keep it true of the finished rounds of controls it does not run). A
    branch's record is its control.json; a branch trained before that file
    existed is checked against the folder's config.json (`saved`, flat
    names). Reads only.
    """
    branches = {spec.branch for spec in parse_specs(names)}
    if every_branch:
        branches |= set(results.control_branches(experiment_dir))
    for branch in sorted(branches):
        current = settings_of(branch, pruning_config)
        recorded = results.read_control_settings(experiment_dir, branch)
        if recorded is None:
            if not results.finished_rounds(experiment_dir, branch) or saved is None:
                continue
            recorded = {field: saved[field] for field in current if field in saved}
        for field, value in current.items():
            if field in recorded and recorded[field] != value:
                raise ConfigError(field, f"the {spec_name(branch)} control in {experiment_dir} was trained "
                                         f"with {field}={recorded[field]!r}, now {value!r}; give the recorded "
                                         "value or use another folder")


def run_controls(model, splits, *, names, rounds, training_config, pruning_config, experiment_dir,
                 build_model=None, on_nan="stop", strategy=None, context=None):
    """Trains each control spec in `names` on its IMP rounds; returns {branch name: records}.

    `model` is the wrapped model of the experiment (its variables are
    overwritten); `build_model(seed)` returns a fresh unwrapped model of the
    same architecture for random_reinit, which wraps it like `model`.
    `context` (from rounds.make_context) reuses the experiment's Trainer.
    """
    unknown = [name for name in names if spec_name(name) not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown controls {', '.join(unknown)}; choose from "
                         f"{', '.join(CONTROLS.names())}")
    specs = parse_specs(names, rounds)
    saved = results.read_config(experiment_dir) if results.config_path(experiment_dir).is_file() else None
    check_settings(experiment_dir, names, pruning_config, saved)
    if context is None:
        context = round_loop.make_context(
            model, splits, rounds=rounds, training_config=training_config,
            pruning_config=pruning_config, experiment_dir=experiment_dir, on_nan=on_nan,
            strategy=strategy, build_model=build_model)
    branches = []
    for spec in specs:
        branch = CONTROLS.get(spec.name)(context, spec.branch)
        branch.spec = spec
        branches.append(branch)
    trained = {}
    for branch in branches:
        results.write_control_settings(experiment_dir, branch.name, branch.spec.name,
                                       settings_of(branch.name, pruning_config))
        trained[branch.name] = round_loop.run_branch(branch)
    return trained
