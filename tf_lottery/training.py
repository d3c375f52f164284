"""Trainer: a custom tf.function training loop with periodic evaluation and checkpoints.

The trainer knows nothing of pruning beyond the fact that the model may hold
masks: masked positions receive zero gradient through LotteryWrapper.
"""

import dataclasses
import functools
import math
import operator
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_lottery import atomic
from tf_lottery import input_pipeline
from tf_lottery import model_ops
from tf_lottery import results
from tf_lottery.config import OPTIMIZERS
from tf_lottery.learning_rates import WarmupPiecewise
from tf_lottery.objective import Objective

@dataclasses.dataclass
class TrainResult:
    """What a training run reports; `curve` holds one record per evaluation."""
    curve: list
    train_steps: int
    wall_seconds: float
    objective: Objective = Objective()

    @property
    def early_stop(self):
        """The evaluation record where the monitor (by default the validation loss) is best.

        The first best one; the last record if the monitor was never measured
        (no validation split).
        """
        monitor = self.objective.monitor
        measured = [r for r in self.curve if r.get(monitor) is not None]
        if not measured:
            return self.curve[-1]
        best = min if self.objective.mode == "min" else max
        return best(measured, key=lambda r: r[monitor])

    def summary(self):
        """The round-record fields: early-stop iteration and accuracies, final accuracy, steps, time,
        and the compiled metrics' and monitor's (Objective.record_fields)."""
        early, final = self.early_stop, self.curve[-1]
        record = {
            "early_stop_iteration": early["iteration"],
            "early_stop_val_loss": early.get("val_loss"),
            "early_stop_val_accuracy": early.get("val_accuracy"),
            "early_stop_test_accuracy": early["test_accuracy"],
            "final_val_accuracy": final.get("val_accuracy"),
            "final_test_accuracy": final["test_accuracy"],
            "train_steps": self.train_steps,
            "wall_seconds": round(self.wall_seconds, 3),
        }
        for key, value in self.objective.record_fields(early, final).items():
            record.setdefault(key, value)
        if self.objective.monitor != Objective.monitor:
            record["early_stop_monitor"] = self.objective.monitor
        if final["iteration"] != self.train_steps:
            record["stopped_at"] = final["iteration"]  # a callback stopped the round early
        return record


def _correct(labels, outputs, from_logits):
    """How many predictions are right: argmax for class scores (sparse or one-hot labels),
    a threshold for one output unit."""
    if outputs.shape[-1] == 1:
        predicted = tf.cast(outputs > (0.0 if from_logits else 0.5), tf.float32)
        return tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(tf.reshape(labels, tf.shape(predicted)),
                                                                   tf.float32)), tf.float32))
    if labels.shape.rank == outputs.shape.rank:
        labels = tf.argmax(labels, axis=-1)
    if not labels.dtype.is_integer or labels.dtype not in (tf.int32, tf.int64):
        labels = tf.cast(labels, tf.int64)
    predictions = tf.argmax(outputs, axis=-1, output_type=labels.dtype)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))


def configure_runtime(seed, deterministic=True):
    """Seeds Python, NumPy and TensorFlow, and turns on deterministic TF ops if asked."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _learning_rate_of(optimizer):
    """The learning rate (a float, variable or schedule) an optimizer (or a loss-scaled one) uses."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return getattr(optimizer, "_learning_rate", None)


def make_optimizer(config):
    """A Keras optimizer whose learning rate warms up linearly, then drops by lr_gamma at each milestone."""
    lr = config.learning_rate
    if config.lr_milestones or config.warmup_steps:
        lr = WarmupPiecewise(config.learning_rate, config.warmup_steps, config.lr_milestones,
                             config.lr_gamma)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum,
                                    nesterov=config.nesterov)
    raise ValueError(f"unknown optimizer '{config.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")


def use_xla(requested, model, strategy):
    """Whether the training step is XLA-compiled: as `requested`, or (None) by where it pays off.

    On CPU, XLA's convolutions are slower than the oneDNN kernels TensorFlow
    uses without it (benchmarks/step_time.py: masked Conv-2 221 ms per step with
    XLA, 159 ms without), while XLA cuts an MLP step by a third (masked
    LeNet-300-100: 2.35 ms without, 1.54 ms with); so by default convolutional
    networks on CPU train without XLA.
    """
    on_cpu = not tf.config.list_logical_devices("GPU") and not isinstance(
        strategy, tf.distribute.TPUStrategy)
    # XLA cannot place a replica's step when replicas are logical devices of one CPU.
    if on_cpu and strategy.num_replicas_in_sync > 1:
        return False
    if requested is not None:
        return requested
    convolutional = any(isinstance(layer, model_ops.CONVOLUTIONS)
                        for layer in model_ops.inner_layers(model))
    return not (on_cpu and convolutional)


class Trainer:
    """Trains `model` on `splits`, one run of `config.train_steps` iterations per `train()` call.

    Each run starts from the model's current weights with a fresh optimizer
    state and evaluates on the validation and test splits at iteration 0,
    every `eval_every` iterations and at the end. The compiled step is kept
    across runs, so IMP rounds do not retrace it.
    """

    def __init__(self, model, splits, config, strategy=None, objective=None):
        if config.data_seed is None:  # a TrainingConfig made in Python: the first data order
            config = dataclasses.replace(config, data_seed=0)
        self.model = model
        self.config = config
        self.objective = objective or Objective()
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"batch_size {config.batch_size} does not split over {replicas} replicas")
        # Batches of the user's pipelines may vary in size: their loss is the batch mean.
        self._batch_mean = getattr(splits, "variable_batches", False)
        if self._batch_mean and replicas > 1:
            raise ValueError("a tf.data pipeline of variable batches trains on one replica; "
                             "use data.Splits or a StreamedSplits with a strategy")
        self._user_loss = self.objective.loss_function()
        with self.strategy.scope():
            self.optimizer = self.objective.make_optimizer() or make_optimizer(config)
            if keras.mixed_precision.global_policy().name == "mixed_float16":
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(model.trainable_variables)
            self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
            # Added to the step the learning-rate schedule sees (IMP's lr_rewind and finetune resets).
            self.lr_offset = tf.Variable(0, dtype=tf.int64, trainable=False, name="lr_offset")
        self._schedule = _learning_rate_of(self.optimizer)
        if isinstance(self._schedule, WarmupPiecewise):
            self._schedule.offset = self.lr_offset
        self._fresh_optimizer = [v.numpy() for v in self.optimizer.variables]
        self._loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="sum")
        self._jit = use_xla(config.jit_compile, model, self.strategy)
        self._train_step_fn = tf.function(self._train_step, jit_compile=self._jit)
        self._train_chunk = tf.function(self._train_chunk_py)
        self._eval_batch = tf.function(self._eval_batch_py)
        self._train_source, self._val, self._test = input_pipeline.sources(splits, config)
        # In-memory validation and test are evaluated together in one compiled call.
        self._eval_arrays = tf.function(self._eval_arrays_py)
        # With XLA, no distribution strategy and the data in memory, a whole chunk of steps (batch
        # indices, gather, forward, backward, update) is one XLA computation: no per-step launch or
        # tf.data. A strategy's step must run through strategy.run, even with one replica.
        default_strategy = self.strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
        self.fused = self._jit and default_strategy and self._train_source.in_memory
        self._fused_chunk = tf.function(self._fused_chunk_py, jit_compile=True)
        # Random layers (dropout) draw from seed generators whose state is not in the model's
        # checkpoint: every run starts them from their first state and checkpoints them, so a
        # round's randomness depends only on its steps and a resumed round repeats it.
        self.rng_states = [generator.state for layer in model._flatten_layers()
                           for generator in getattr(layer, "_seed_generators", ())]
        self._fresh_rng = [keras.ops.convert_to_numpy(v) for v in self.rng_states]
        masks = {id(w): m for wrapper in model_ops.wrappers(model) for _, w, m in wrapper.masked_weights}
        # Weight decay acts on the effective weights, so pruned positions still get no gradient.
        self._decayed = [(v, masks.get(id(v))) for v in model.trainable_variables]

    def fall_back_from_xla(self, error):
        """Recompiles the step without XLA after XLA failed to compile it; False if it was not XLA."""
        if not self._jit:
            return False
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "XLA" in line or "implement" in line), lines[0])
        logging.warning("XLA cannot compile this training step (%s); training without XLA", reason)
        self._jit = self.fused = False
        self._train_step_fn = tf.function(self._train_step)
        self._train_chunk = tf.function(self._train_chunk_py)
        return True

    def _train_step(self, batch, step):
        """One replica's step; its loss is its share of the global-batch mean, so gradients sum."""
        replicas = self.strategy.num_replicas_in_sync
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed_step = step * replicas + tf.cast(replica, tf.int64)
        images, labels = self._train_source.prepare(batch, seed_step)
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(images, training=True), tf.float32)
            loss = self._batch_loss(labels, logits)
            total = loss + tf.add_n(self.model.losses) / replicas if self.model.losses else loss
            if self.config.weight_decay:
                total += 0.5 * self.config.weight_decay / replicas * tf.add_n(
                    [tf.reduce_sum(tf.square(v if m is None else tf.where(m > 0, v, tf.zeros_like(v))))
                     for v, m in self._decayed])
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                total = self.optimizer.scale_loss(total)
        variables = self.model.trainable_variables
        grads = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return loss

    def first_batches(self, count):
        """The first `count` training batches of the run's data order, as (inputs, labels) tensors."""
        source = self._train_source
        iterator = iter(source.batches(self.config.batch_size, self.config.data_seed))
        return [source.prepare(next(iterator), tf.constant(i, tf.int64)) for i in range(count)]

    def loss(self, labels, outputs):
        """The training loss of one batch (its mean, or the compiled loss)."""
        return self._batch_loss(labels, outputs)

    def _batch_loss(self, labels, outputs):
        """This replica's share of the mean training loss of the global batch."""
        if self._user_loss is not None:
            return self._user_loss(labels, outputs) / self.strategy.num_replicas_in_sync
        if self._batch_mean:
            return self._loss(labels, outputs) / tf.cast(tf.shape(labels)[0], tf.float32)
        return self._loss(labels, outputs) / self.config.batch_size

    def _train_chunk_py(self, iterator, steps):
        total = tf.constant(0.0)
        for i in tf.range(steps):
            per_replica = self.strategy.run(
                self._train_step_fn, args=(next(iterator), self.iteration + tf.cast(i, tf.int64)))
            total += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        self.iteration.assign_add(tf.cast(steps, tf.int64))
        return total

    def _fused_chunk_py(self, indices, steps):
        """`steps` training steps on the batches of `indices` (batch_size indices a step), compiled
        whole; returns the losses of the steps (then zeros up to steps_per_call)."""
        size = self.config.batch_size

        def step(i, losses):
            batch = tf.slice(indices, [i * size], [size])
            return i + 1, losses.write(i, self._train_step(batch, self.iteration + tf.cast(i, tf.int64)))

        losses = tf.TensorArray(tf.float32, size=self.config.steps_per_call, element_shape=[])
        _, losses = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), losses))
        self.iteration.assign_add(tf.cast(steps, tf.int64))
        return losses.stack()

    def train_chunk(self, step, steps, batches):
        """Trains iterations step+1 .. step+steps; returns the sum of their losses.

        `batches()` is the batch iterator (positioned at `step`) of the path
        without fusion; it is called only on that path.
        """
        if self.fused:
            indices = self._train_source.order(self.config.batch_size, self.config.data_seed, step, steps,
                                               self.config.steps_per_call)
            losses = self._fused_chunk(indices, tf.constant(steps, tf.int32)).numpy()[:steps]
            # Summed one after another in float32, as the step loop sums them.
            return float(functools.reduce(operator.add, losses, np.float32(0.0)))
        return float(self._train_chunk(batches(), tf.constant(steps, tf.int64)))

    def _eval_batch_py(self, images, labels):
        logits = tf.cast(self.model(images, training=False), tf.float32)
        if self._user_loss is None:
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        else:
            loss = self._user_loss(labels, logits) * tf.cast(tf.shape(logits)[0], tf.float32)
        correct = _correct(labels, logits, self.objective.from_logits)
        # The outputs leave the compiled call only when compiled metrics need them.
        return (loss, correct, logits) if self.objective.metrics else (loss, correct, None)

    def _eval_arrays_py(self):
        """The loss sum and correct count of every eval batch of each in-memory split present."""
        size, sums = self.config.eval_batch_size, []
        for source in (self._val, self._test):
            if source is None:
                continue
            full, rest = divmod(source.size, size)

            def batch(i, losses, corrects, source=source):
                loss, correct, _ = self._eval_batch_py(*source.eval_slice(i * size, size))
                return i + 1, losses.write(i, loss), corrects.write(i, correct)

            losses, corrects = (tf.TensorArray(tf.float32, size=full + bool(rest), element_shape=[])
                                for _ in range(2))
            _, losses, corrects = tf.while_loop(lambda i, *_: i < full, batch,
                                                (tf.constant(0), losses, corrects))
            if rest:
                loss, correct, _ = self._eval_batch_py(*source.eval_slice(full * size, rest))
                losses, corrects = losses.write(full, loss), corrects.write(full, correct)
            sums.append((losses.stack(), corrects.stack()))
        return sums

    def _evaluate_arrays(self):
        sums = iter(self._eval_arrays())
        values = {}
        for prefix, source in (("val", self._val), ("test", self._test)):
            loss = correct = None
            if source is not None:
                loss = correct = 0.0
                for batch_loss, batch_correct in zip(*(t.numpy() for t in next(sums))):
                    loss += float(batch_loss)
                    correct += float(batch_correct)
                loss, correct = loss / source.size, correct / source.size
            values.update({f"{prefix}_loss": loss, f"{prefix}_accuracy": correct})
        return values

    def _evaluate_split(self, batches, prefix):
        if isinstance(batches, input_pipeline.ArraySource):
            batches = batches.eval_batches(self.config.eval_batch_size)
        if batches is None:
            return {f"{prefix}_loss": None, f"{prefix}_accuracy": None}
        metrics = self.objective.make_metrics()
        loss = correct = count = 0.0
        for images, labels in batches:
            batch_loss, batch_correct, outputs = self._eval_batch(images, labels)
            loss += float(batch_loss)
            correct += float(batch_correct)
            count += int(labels.shape[0])
            for metric in metrics:
                metric.update_state(labels, outputs)
        values = {f"{prefix}_loss": loss / count, f"{prefix}_accuracy": correct / count}
        values.update({f"{prefix}_{m.name}": float(m.result()) for m in metrics})
        return values

    def evaluate(self):
        """{'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', and val_/test_ of each compiled
        metric} of the model as it is now."""
        in_memory = any(isinstance(s, input_pipeline.ArraySource) for s in (self._val, self._test))
        if in_memory and not self.objective.metrics:
            return self._evaluate_arrays()
        return {**self._evaluate_split(self._val, "val"), **self._evaluate_split(self._test, "test")}

    def train(self, directory=None, hooks=None, name="train", callbacks=None, verbose=0, steps=None,
              lr_offset=0):
        """Runs (or, from a checkpoint in `directory`, finishes) one training run.

        `steps` (default: the config's train_steps) is the run's length, and
        the learning-rate schedule sees iteration i as i + `lr_offset` (a
        schedule of the TrainingConfig's; a constant rate is unaffected).

        With `directory`, checkpoints of model, optimizer and iteration go to
        `directory/ckpt` every `checkpoint_every` iterations and at the end,
        with the evaluation curve in `directory/progress.json`; a later call
        with the same directory continues from the latest checkpoint, and the
        data order continues where it stopped. `hooks` maps an iteration to a
        callable run once exactly that many iterations are done (before that
        iteration's checkpoint).

        `callbacks` (Keras callbacks) see the run as `fit` would with one
        "epoch" per evaluation: on_train_begin, on_epoch_begin/on_epoch_end
        with the evaluation's logs (loss, val_loss, val_accuracy, ...),
        on_train_end; setting model.stop_training ends the run after that
        evaluation. `verbose=1` shows a progress bar.
        """
        if lr_offset and isinstance(self._schedule, keras.optimizers.schedules.LearningRateSchedule) and (
                not isinstance(self._schedule, WarmupPiecewise)):
            raise ValueError("lr_offset shifts the TrainingConfig's learning-rate schedule; the compiled "
                             f"optimizer's {type(self._schedule).__name__} cannot be shifted")
        self.lr_offset.assign(lr_offset)
        return _Run(self, directory, hooks, name, callbacks, verbose, steps).train()


class _Run:
    """One training run of a Trainer: its checkpoints, progress record and loop."""

    def __init__(self, trainer, directory, hooks, name, callbacks=None, verbose=0, steps=None):
        self.trainer = trainer
        self.config = trainer.config
        self.steps = self.config.train_steps if steps is None else steps
        self.name = name
        self.callbacks = keras.callbacks.CallbackList(list(callbacks or ()), model=trainer.model)
        self.progress = None
        if verbose:
            shown = ["loss"] + [f"{split}_{name}" for split in ("val", "test") for name in
                                ["loss", "accuracy"] + [m.name for m in trainer.objective.make_metrics()]]
            self.progress = keras.utils.Progbar(self.steps, stateful_metrics=shown)
        self.hooks = dict(hooks or {})
        bad = [k for k in self.hooks if not 0 <= k <= self.steps]
        if bad:
            raise ValueError(f"hook iterations {bad} are outside [0, {self.steps}]")
        self.directory = pathlib.Path(directory) if directory else None
        self.manager = None
        # A stream cannot seek to a step, so its iterator position goes into the checkpoint.
        self.stream = None
        if not trainer._train_source.seekable:
            self.stream = self._batches(0)
        if self.directory:
            data_position = {"data": self.stream} if self.stream is not None else {}
            if trainer.rng_states:
                data_position["rng"] = list(trainer.rng_states)
            checkpoint = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer,
                                             iteration=trainer.iteration, **data_position)
            self.manager = tf.train.CheckpointManager(
                checkpoint, str(results.checkpoint_dir(self.directory)), max_to_keep=2)

    def _restore(self):
        """Restores the newest readable checkpoint; returns the progress record saved with it.

        A checkpoint that cannot be read (torn or corrupt files) is skipped
        with a warning naming it, and the one before it is used.
        """
        fresh = {"curve": [], "wall_seconds": 0.0, "loss_sum": 0.0, "loss_steps": 0}
        if not self.manager or not self.manager.checkpoints:
            return fresh
        path = results.progress_path(self.directory)
        records = {r["iteration"]: r for r in self._records()}
        for checkpoint in reversed(self.manager.checkpoints):
            step = int(checkpoint.rsplit("-", 1)[1])
            if step not in records:
                # Killed between the progress write and the checkpoint write.
                logging.warning("%s: %s has no record of checkpoint %s; using an older one",
                                self.name, path, checkpoint)
                continue
            try:
                self.manager.checkpoint.restore(checkpoint).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError, OSError) as error:
                logging.warning("%s: checkpoint %s is unreadable (%s); using an older one",
                                self.name, checkpoint, str(error).splitlines()[0])
                continue
            logging.info("%s: resuming from iteration %d (%s)", self.name, step, checkpoint)
            return records[step]
        raise results.DamagedFile(results.checkpoint_dir(self.directory),
                                  f"no readable checkpoint among {', '.join(self.manager.checkpoints)}",
                                  results.retrain_round(self.directory))

    def _records(self):
        return results.read_progress(self.directory)

    def _save(self, progress):
        step = int(self.trainer.iteration.numpy())
        kept = {int(c.rsplit("-", 1)[1]) for c in self.manager.checkpoints}
        # Records of saves lost to a kill (no checkpoint) are dropped; the newest
        # is written before its checkpoint, so a kill in between leaves it without one.
        records = [r for r in self._records() if r["iteration"] in kept and r["iteration"] < step]
        atomic.write_json(results.progress_path(self.directory),
                          {"records": records + [{"iteration": step, **progress}]})
        self.manager.save(checkpoint_number=step)

    def _batches(self, step):
        """An iterator over the training batches from iteration `step` on, split over replicas."""
        if self.stream is not None:
            return self.stream
        stream = self.trainer._train_source.batches(
            self.config.batch_size, self.config.data_seed, start_step=step)
        if self.trainer.strategy.num_replicas_in_sync > 1:
            stream = self.trainer.strategy.experimental_distribute_dataset(stream)
        return iter(stream)

    def _next_stop(self, step):
        c = self.config
        stops = [self.steps, (step // c.eval_every + 1) * c.eval_every]
        if self.manager:
            stops.append((step // c.checkpoint_every + 1) * c.checkpoint_every)
        stops += [k for k in self.hooks if k > step]
        return min(stops)

    def train(self):
        c, trainer = self.config, self.trainer
        for variable, value in zip(trainer.optimizer.variables, trainer._fresh_optimizer):
            variable.assign(value)
        for variable, value in zip(trainer.rng_states, trainer._fresh_rng):
            variable.assign(value)
        trainer.iteration.assign(0)
        progress = self._restore()
        curve, wall_before = progress["curve"], progress["wall_seconds"]
        loss_sum, loss_steps = progress["loss_sum"], progress["loss_steps"]
        start_time = time.perf_counter()
        step = int(trainer.iteration.numpy())
        trainer.model.stop_training = False
        self.callbacks.on_train_begin()
        if step == 0:
            if 0 in self.hooks:
                self.hooks[0](0)
            curve = [{"iteration": 0, "train_loss": None, **trainer.evaluate()}]
        iterator = []

        def batches(restart=False):
            if restart or not iterator:
                iterator[:] = [self._batches(step)]
            return iterator[0]

        self.callbacks.on_epoch_begin(len(curve) - 1)
        while step < self.steps and not trainer.model.stop_training:
            stop = self._next_stop(step)
            while step < stop:
                n = min(c.steps_per_call, stop - step)
                try:
                    chunk_loss = trainer.train_chunk(step, n, batches)
                except tf.errors.UnimplementedError as error:
                    # Raised before any step ran; only the iterator moved, so restart it
                    # (a stream, which cannot restart, skips one batch).
                    if not trainer.fall_back_from_xla(error):
                        raise
                    chunk_loss = trainer.train_chunk(step, n, lambda: batches(restart=True))
                step += n
                if not math.isfinite(chunk_loss):
                    raise FloatingPointError(
                        f"{self.name}: training loss is {chunk_loss} in iterations {step - n + 1}-{step}")
                loss_sum += chunk_loss
                loss_steps += n
                if self.progress:
                    self.progress.update(step, [("loss", chunk_loss / n)])
            if step in self.hooks:
                self.hooks[step](step)
            if step % c.eval_every == 0 or step == self.steps:
                train_loss = loss_sum / loss_steps
                record = {"iteration": step, "train_loss": train_loss, **trainer.evaluate()}
                curve.append(record)
                loss_sum, loss_steps = 0.0, 0
                log = logging.info if len(curve) % 10 == 1 or step == self.steps else logging.debug
                log("%s: iteration %d train loss %.4f val acc %s test acc %s",
                    self.name, step, train_loss, _fmt(record["val_accuracy"]),
                    _fmt(record["test_accuracy"]))
                self._end_epoch(len(curve) - 2, record, last=step == self.steps)
            if self.manager and (step % c.checkpoint_every == 0 or step == self.steps
                                 or trainer.model.stop_training):
                self._save({"curve": curve, "loss_sum": loss_sum, "loss_steps": loss_steps,
                            "wall_seconds": wall_before + time.perf_counter() - start_time})
        wall = wall_before + time.perf_counter() - start_time
        self.callbacks.on_train_end({k: v for k, v in curve[-1].items() if v is not None})
        return TrainResult(curve=curve, train_steps=self.steps, wall_seconds=wall,
                           objective=trainer.objective)

    def _end_epoch(self, epoch, record, last):
        """Hands one evaluation to the callbacks as the end of an epoch (and the progress bar)."""
        logs = {("loss" if k == "train_loss" else k): v for k, v in record.items()
                if v is not None and k != "iteration"}
        self.callbacks.on_epoch_end(epoch, logs)
        if self.progress:
            self.progress.update(record["iteration"], [(k, v) for k, v in logs.items() if k != "loss"])
        if not last and not self.trainer.model.stop_training:
            self.callbacks.on_epoch_begin(epoch + 1)


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"
