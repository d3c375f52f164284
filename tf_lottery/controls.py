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

import numpy as np
from etils import epy

from tf_lottery import results
from tf_lottery import rounds as round_loop
from tf_lottery.registry import Registry

with epy.lazy_imports():  # config reads the registry before TensorFlow may load
    from tf_lottery import model_ops
    from tf_lottery import pruning
    from tf_lottery.pruning import saliency
    from tf_lottery.results import checkpoints

CONTROLS = Registry("control")

# Bases of the controls' random draws, offset by the experiment's seed and the round.
_REINIT_SEED = 10_000
_RANDOM_MASK_SEED = 20_000


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
    spec = None     # the ControlSpec it runs under (run_controls sets it)

    @classmethod
    def refuse(cls, pruning_config):
        """Why the control cannot run with these pruning settings (a sentence), or None."""
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
        return results.read_masks(results.mask_path(directory), "controls")

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

    random = True

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

    random = True

    def start(self, round_index, records):
        config = self.context.pruning_config
        seed = draw_seed(_RANDOM_MASK_SEED, config.seed, round_index, self.draw)
        masks = pruning.random_like(self.imp_mask(round_index), seed=seed,
                                    structure=self.context.structures(), **config.structure_options())
        self.from_trained_dense(lambda model: {k: v.numpy() for k, v in masks.items()}, round_index)


@CONTROLS.register("one_shot", help="round 0's trained weights pruned at once to IMP's sparsity, then reset")
class OneShot(Control):
    """Round 0's trained weights pruned in one step to round r's per-tensor sparsity, then reset."""

    @classmethod
    def refuse(cls, pruning_config):
        if pruning_config.structure == "n_of_m":
            return "one_shot cannot reach an N:M pattern at a given density; drop it or the n_of_m structure"
        return None

    def start(self, round_index, records):
        config, structures = self.context.pruning_config, self.context.structures()
        densities = self.imp_densities(round_index)

        def one_shot(model):
            weights = model_ops.raw_weights(model)
            ones = {k: np.ones_like(v) for k, v in model_ops.get_masks(model).items()}
            new = pruning.prune(weights, ones, densities=densities, scope=config.scope,
                                structure=structures, **config.structure_options())
            return {k: v.numpy() for k, v in new.items()}

        self.from_trained_dense(one_shot, round_index)


class BeforeTraining(Control):
    """Pruned at the reset point (theta_0 or theta_k) by a score, to round r's per-tensor sparsity."""

    def start(self, round_index, records):
        context = self.context
        model_ops.set_masks(context.model, {k: np.ones_like(v)
                                            for k, v in model_ops.get_masks(context.model).items()})
        context.reset_point.restore()
        model_ops.set_masks(context.model, self.masks(self.imp_densities(round_index)))
        context.reset_point.restore()

    def prune(self, scores, masks, densities):
        config = self.context.pruning_config
        new = pruning.prune(scores, masks, densities=densities, scope=config.scope,
                            structure=self.context.structures(), **config.structure_options())
        return {k: v.numpy() for k, v in new.items()}

    def masks(self, densities):
        """The masks at `densities`, from the dense model at the reset point."""
        raise NotImplementedError


@CONTROLS.register("snip", help="pruned before training by |g * w| on a few batches (Lee et al. 2019)")
class Snip(BeforeTraining):
    def masks(self, densities):
        context = self.context
        batches = context.trainer.first_batches(context.pruning_config.saliency_batches)
        scores = saliency.snip(context.model, batches, context.trainer.loss)
        return self.prune(scores, model_ops.get_masks(context.model), densities)


@CONTROLS.register("grasp", help="pruned before training by w * Hg, keeping gradient flow (Wang et al. "
                                 "2020); unstructured only")
class Grasp(BeforeTraining):
    @classmethod
    def refuse(cls, pruning_config):
        if pruning_config.structure != "unstructured":
            return "grasp's scores are signed, so they rank single weights only; use --structure=unstructured"
        return None

    def masks(self, densities):
        context = self.context
        batches = context.trainer.first_batches(context.pruning_config.saliency_batches)
        scores = saliency.grasp(context.model, batches, context.trainer.loss)
        # Shifted to be >= 0 (the pruning criterion ranks magnitudes), one shift for all tensors so
        # a global scope compares them as they were.
        low = min(float(v.min()) for v in scores.values())
        return self.prune({k: v - low for k, v in scores.items()}, model_ops.get_masks(context.model),
                          densities)


@CONTROLS.register("synflow", help="pruned before training by iterative synaptic flow, without data "
                                   "(Tanaka et al. 2020)")
class Synflow(BeforeTraining):
    def masks(self, densities):
        model, steps = self.context.model, self.context.pruning_config.synflow_iterations
        masks = model_ops.get_masks(model)
        for step in range(1, steps + 1):
            # The density falls exponentially to the target over the iterations.
            masks = self.prune(saliency.synflow(model), masks,
                               {k: d ** (step / steps) for k, d in densities.items()})
            model_ops.set_masks(model, masks)
        return masks


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
    return {branch.name: round_loop.run_branch(branch) for branch in branches}
