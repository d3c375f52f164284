"""Keras callbacks: prune a wrapped model inside `model.fit` on a TF-MOT schedule, and take the rewind point.

`PruneDuringFit` and `RewindSnapshot` replace TF-MOT's `prune_low_magnitude` +
`UpdatePruningStep` for Keras 3 models wrapped with `tf_lottery.wrap`;
`tf_lottery.strip` replaces `strip_pruning`. See docs/keras_fit.md.
"""

import collections
import dataclasses
import inspect

import keras
import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from tf_lottery import model_ops
from tf_lottery import pruning
from tf_lottery.config import PruningConfig
from tf_lottery.settings import ConfigError, flag_name

__all__ = ["PruneDuringFit", "PruningUpdate", "RewindSnapshot"]

_RATE_SETTINGS = ("output_fraction", "conv_fraction")

PruningUpdate = collections.namedtuple("PruningUpdate", "iteration step sparsity")
PruningUpdate.__doc__ = """One mask update, made after `iteration` training steps (optimizer.iterations),
to the `sparsity` the schedule gives at `step`: iteration + 1, or an earlier step that fell inside an
execution when steps_per_execution > 1."""


def _iterations(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"model '{model.name}' is not compiled; call model.compile(...) before fit")
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _check_wrapped(model):
    if not isinstance(model, keras.Model) or not model_ops.wrappers(model):
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(f"model '{name}' has no LotteryWrapper; call model = tfl.wrap(model) "
                         "first and compile and fit the wrapped model")


def _listed_after(callback):
    """The callbacks listed after `callback` in the fit that is setting it up ([] when not known).

    Keras gives a callback no handle on the others of its fit: the
    keras.callbacks.CallbackList that runs them calls each one's set_model in
    turn, so it is looked for among the callers of set_model.
    """
    frame = inspect.currentframe()
    try:
        for _ in range(8):
            frame = frame.f_back
            if frame is None:
                return []
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList):
                listed = list(owner.callbacks)
                here = next((i for i, c in enumerate(listed) if c is callback), None)
                return [] if here is None else listed[here + 1:]
        return []
    finally:
        del frame


def _pruning_config(config, overrides):
    """`config` (or the defaults) with the keyword overrides; a ConfigError names the argument."""
    if config is None:
        config = PruningConfig()
    elif not isinstance(config, PruningConfig):
        raise ConfigError("config", f"must be a tf_lottery.PruningConfig, got {type(config).__name__}")
    for name in _RATE_SETTINGS:
        if getattr(config, name) is not None:
            raise ConfigError(name, "does not apply when pruning during fit: the schedule gives every "
                                    "pruned tensor the same sparsity, the output layer included (list a "
                                    "layer in dense_layers to keep it dense)")
    try:
        return dataclasses.replace(config, **overrides)
    except ConfigError as error:
        fields = {flag_name(f): f.name for f in dataclasses.fields(PruningConfig) if f.metadata}
        raise ConfigError(fields.get(error.field, error.field), error.message) from None


class PruneDuringFit(keras.callbacks.Callback):
    """Prunes a wrapped model gradually during `model.fit` on a TF-MOT PruningSchedule.

    Before each call of the compiled training function, the callback calls
    the schedule, `schedule(step) -> (should_prune, sparsity)`, on the number
    of the training step about to run, counting from 1
    (`model.optimizer.iterations + 1`, TF-MOT's pruning_step). If it prunes,
    the masks of every wrapped layer not in `dense_layers` are recomputed by
    `tf_lottery.pruning.prune` from the effective weights (`weight * mask`)
    and the current masks, keeping `1 - sparsity` of each tensor's units
    (weights, neurons, filters, channels or blocks; of each pool with
    scope='global'), and assigned. Masks only shrink and the wrapper gives
    pruned positions zero gradient, so pruned weights never come back. The
    output layer is pruned like the others, at the same sparsity (with
    structure 'neuron' or 'filter', weight by weight: its units are the
    classes); list it in `dense_layers` to keep it dense.

    With `steps_per_execution=K`, Keras runs callbacks once per execution
    (K steps, fewer at the end of an epoch): the masks are updated when an
    execution starts, to the target of the latest pruning step up to the
    step about to run, so a pruning step inside an execution is applied up
    to K - 1 steps late.

    `logs[log_key]` (default 'sparsity') holds the fraction of zeros in the
    masks of the pruned tensors at the end of each batch and epoch, so the
    progress bar, History and callbacks listed after this one (TensorBoard)
    see it.

    Masks never grow back, also under callbacks that restore weights (the
    masks are weights too). When training begins and ends, when an epoch
    begins and before each mask update, the callback compares the masks with
    the ones it last applied. If pruned positions came back while the step
    counter did not go back (EarlyStopping(restore_best_weights=True), or any
    restore of earlier weights), its masks are applied to the restored
    weights again, with a warning. If the step counter went back with them
    (BackupAndRestore resuming an interrupted fit), the restored masks are
    those of that step: updates after it are dropped and the schedule
    resumes there, as in an uninterrupted fit. EarlyStopping with
    restore_best_weights=True restores when training ends, so it must be
    listed before this callback (a ValueError otherwise); BackupAndRestore
    may be listed anywhere.

    Args:
        schedule: a tfmot.sparsity.keras.PruningSchedule (PolynomialDecay,
            ConstantSparsity or a subclass), called on the step counter.
        config: a tf_lottery.PruningConfig whose scope, criterion, structure,
            structure_norm, block_shape, block_pooling, n_of_m, dense_layers and
            seed are used (its rates and schedule are IMP's and do not apply).
        scope, criterion, structure, structure_norm, block_shape,
            block_pooling, n_of_m, dense_layers, seed: override the config's
            field of the same name (see PruningConfig and pruning.prune).
        log_key: the logs key of the sparsity, or None not to log it.

    Attributes:
        updates: the PruningUpdate of every mask update so far.
        sparsity: the current fraction of zeros over the pruned tensors' masks.
    """

    def __init__(self, schedule, config=None, *, scope=None, criterion=None, structure=None,
                 structure_norm=None, block_shape=None, block_pooling=None, n_of_m=None,
                 dense_layers=None, seed=None, log_key="sparsity"):
        super().__init__()
        if not isinstance(schedule, tfmot.sparsity.keras.PruningSchedule):
            raise ConfigError("schedule", "must be a tfmot.sparsity.keras.PruningSchedule such as "
                                          f"PolynomialDecay or ConstantSparsity, got {schedule!r}")
        if log_key is not None and not (isinstance(log_key, str) and log_key):
            raise ConfigError("log_key", f"must be a non-empty string or None, got {log_key!r}")
        if isinstance(dense_layers, str):
            dense_layers = (dense_layers,)
        given = dict(scope=scope, criterion=criterion, structure=structure,
                     structure_norm=structure_norm, block_shape=block_shape,
                     block_pooling=block_pooling, n_of_m=n_of_m, dense_layers=dense_layers, seed=seed)
        self.schedule = schedule
        self.config = _pruning_config(config, {k: v for k, v in given.items() if v is not None})
        self.log_key = log_key
        self.updates = []
        self.sparsity = None
        self._keys = []
        self._structures = {}
        self._checked = None
        self._masks = None  # the pruned tensors' masks as last applied (or found), and
        self._seen = 0      # the largest step counter seen since

    def set_model(self, model):
        """Checks that `model` is wrapped and that `dense_layers` name its layers."""
        _check_wrapped(model)
        dense = set(self.config.dense_layers)
        model_ops.check_layer_names(model, dense, "dense_layers")
        keys = [key for key, _, _ in model_ops.masked_weights(model)]
        self._keys = [key for key in keys if key.split("/")[0] not in dense]
        if not self._keys:
            raise ValueError(f"dense_layers: every wrapped layer of model '{model.name}' is listed, "
                             "so there is nothing to prune")
        structures = model_ops.structures(model, self.config)
        self._structures = {key: structures[key] for key in self._keys}
        restoring = [c for c in _listed_after(self) if isinstance(c, keras.callbacks.EarlyStopping)
                     and c.restore_best_weights]
        if restoring:
            raise ValueError("PruneDuringFit: list it after EarlyStopping(restore_best_weights=True) in "
                             "callbacks: that callback restores the best epoch's weights, masks "
                             "included, when training ends, after PruneDuringFit's last look at them; "
                             "listed after it, PruneDuringFit applies its masks to the restored weights "
                             "again")
        super().set_model(model)

    def on_train_begin(self, logs=None):
        self._keep_masks()
        step = _iterations(self.model) + 1
        if self._checked is None or self._checked >= step:
            self._checked = step - 1

    def on_epoch_begin(self, epoch, logs=None):
        self._keep_masks()

    def on_train_batch_begin(self, batch, logs=None):
        iteration = _iterations(self.model)
        self._seen = max(self._seen, iteration)
        latest = self._latest_pruning_step(iteration + 1)
        if latest is not None:
            self._prune(iteration, *latest)
        self._checked = iteration + 1

    def on_train_batch_end(self, batch, logs=None):
        self._log(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._log(logs)

    def on_train_end(self, logs=None):
        self._keep_masks()
        iteration = _iterations(self.model)
        latest = self._latest_pruning_step(iteration)
        applied = self.updates[-1].sparsity if self.updates else 0.0
        if latest is not None and latest[1] > applied:
            logging.warning("PruneDuringFit: the schedule prunes to sparsity %.4g at step %d, but "
                            "training stopped after step %d, before the masks were updated there "
                            "(steps_per_execution > 1); end the schedule on a step that starts an "
                            "execution (1 more than a multiple of steps_per_execution)",
                            latest[1], latest[0], iteration)

    def _latest_pruning_step(self, last):
        """(step, sparsity) of the latest step in (last checked, last] where the schedule prunes, or None."""
        for step in range(last, self._checked, -1):
            should_prune, sparsity = self.schedule(step)
            if bool(should_prune):
                return step, float(sparsity)
        return None

    def _keep_masks(self):
        """The model's masks, after making sure that no pruned position came back (see the class doc)."""
        masks = model_ops.get_masks(self.model)
        iteration = _iterations(self.model)
        mine = {key: masks[key] for key in self._keys}
        went_back = iteration < self._seen
        if went_back and self._checked is not None:
            self._checked = min(self._checked, iteration)
        if self._masks is not None and any(((mine[k] > 0) & (self._masks[k] == 0)).any() for k in self._keys):
            if went_back:  # the step counter went back with the weights: a resumed backup
                self.updates = [u for u in self.updates if u.iteration < iteration]
                logging.info("PruneDuringFit: weights, masks and step counter were restored to step %d; "
                             "the schedule resumes there", iteration)
            else:
                restored = self._mask_sparsity(mine)
                mine = {key: mine[key] * self._masks[key] for key in self._keys}
                model_ops.set_masks(self.model, mine, strict=False)
                masks.update(mine)
                logging.warning("PruneDuringFit: at step %d a callback restored masks of sparsity %.4g "
                                "(EarlyStopping(restore_best_weights=True) or another restore of earlier "
                                "weights); the masks of sparsity %.4g are applied again, to the restored "
                                "weights", iteration, restored, self._mask_sparsity(mine))
        self._masks = mine
        self._seen = iteration
        self.sparsity = self._mask_sparsity(mine)
        return masks

    def _prune(self, iteration, step, sparsity):
        config = self.config
        masks = self._keep_masks()
        weights = model_ops.effective_weights(self.model)
        densities = {key: 1.0 - sparsity for key in self._keys}
        distribution = getattr(pruning.SCOPES.get(config.scope), "distribution", None)
        if distribution is not None and sparsity > 0:
            densities = distribution({key: weights[key].shape for key in self._keys}, 1.0 - sparsity)
        new = pruning.prune(
            weights, masks, densities=densities, scope=config.scope,
            criterion=config.criterion, structure=self._structures,
            n_of_m=config.n_of_m, seed=config.seed + step, **config.structure_options())
        new = {key: np.asarray(new[key]) for key in self._keys}
        model_ops.set_masks(self.model, new, strict=False)
        self._masks = new
        self.sparsity = self._mask_sparsity(new)
        self.updates.append(PruningUpdate(iteration, step, sparsity))

    def _mask_sparsity(self, masks):
        size = sum(masks[key].size for key in self._keys)
        return 1.0 - sum(float(np.sum(masks[key])) for key in self._keys) / size

    def _log(self, logs):
        if logs is not None and self.log_key is not None and self.sparsity is not None:
            logs[self.log_key] = self.sparsity


class RewindSnapshot(keras.callbacks.Callback):
    """Takes the rewind point theta_k during `model.fit`: the snapshot after `step` training steps.

    When the step counter (`model.optimizer.iterations`) reaches `step`,
    `tf_lottery.snapshot(model)` copies the wrapped layers' weights into
    their snapshots (at the start of training for step=0), and the
    unwrapped layers' weights (e.g. batch norm) are kept in memory. After
    training, `tf_lottery.reset(model)` sets the wrapped layers back to
    theta_k (masks kept); `rewind()` does that and restores the unwrapped
    layers too (Frankle et al. 2019, "Stabilizing the lottery ticket
    hypothesis").

    With `steps_per_execution=K`, callbacks run once per K steps: make `step`
    a multiple of K. Otherwise the snapshot is taken at the first boundary
    after `step`, with a warning; `taken_at` says when it was taken. A fit
    that starts past `step` without the snapshot taken is a ValueError.

    Args:
        step: k, the number of training steps after which the snapshot is taken.

    Attributes:
        taken_at: the step counter when the snapshot was taken, or None.
    """

    def __init__(self, step):
        super().__init__()
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ConfigError("step", f"must be an integer >= 0, got {step!r}")
        self.step = int(step)
        self.taken_at = None
        self._unwrapped = {}

    def set_model(self, model):
        """Checks that `model` is wrapped."""
        _check_wrapped(model)
        super().set_model(model)

    def on_train_begin(self, logs=None):
        iteration = _iterations(self.model)
        if self.taken_at is None and iteration > self.step:
            raise ValueError(f"RewindSnapshot: training starts after {iteration} steps, past step "
                             f"{self.step}, whose weights can no longer be taken")
        self._maybe_take()

    def on_train_batch_begin(self, batch, logs=None):
        if self.taken_at is None:
            self._maybe_take()

    def on_train_end(self, logs=None):
        self._maybe_take()
        if self.taken_at is None:
            logging.warning("RewindSnapshot: training stopped at step %d, before step %d; no snapshot "
                            "taken yet", _iterations(self.model), self.step)

    def _maybe_take(self):
        if self.taken_at is not None:
            return
        iteration = _iterations(self.model)
        if iteration < self.step:
            return
        model_ops.snapshot(self.model)
        self._unwrapped = {path: keras.ops.convert_to_numpy(v)
                           for path, v in model_ops.unwrapped_variables(self.model).items()}
        self.taken_at = iteration
        if iteration != self.step:
            logging.warning("RewindSnapshot: snapshot taken at step %d, not %d: callbacks only run "
                            "between executions (make the step a multiple of steps_per_execution)",
                            iteration, self.step)

    def rewind(self):
        """Sets the model back to the snapshot: wrapped layers (masks kept) and unwrapped layers."""
        if self.taken_at is None:
            raise ValueError(f"no snapshot taken yet: training has not reached step {self.step}")
        model_ops.reset(self.model)
        for path, variable in model_ops.unwrapped_variables(self.model).items():
            variable.assign(self._unwrapped[path])
