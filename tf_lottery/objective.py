"""What a round optimises and reports: loss, optimizer, metrics and the early-stopping quantity.

The zoo's objective (the default) is sparse cross-entropy on logits with the
optimizer of the TrainingConfig. A user's compiled Keras model brings its
own: `Objective.from_compiled(model)` reads `model.get_compile_config()`, so
every round starts from a fresh optimizer made from the same config.
"""

import dataclasses

from etils import epy

with epy.lazy_imports():
    import keras

_ACCURACY_NAMES = ("accuracy", "acc")  # computed for every round anyway (argmax or threshold)


def _canonical(serialized):
    """A serialized optimizer in one spelling: no instance name (Keras numbers them adam, adam_1,
    ...) and the class name in lower case (Keras writes 'Adam' or 'adam')."""
    if isinstance(serialized, dict) and isinstance(serialized.get("config"), dict):
        config = {k: v for k, v in serialized["config"].items() if k != "name"}
        return {**serialized, "class_name": str(serialized.get("class_name", "")).lower(),
                "config": config}
    return serialized


@dataclasses.dataclass(frozen=True)
class Objective:
    """Loss, optimizer and metrics of a compiled model (None: the zoo's), and the early-stop monitor.

    `monitor` names an evaluation field (val_loss, val_accuracy, val_<metric>,
    or the test_ ones; anything else is a ValueError listing them); the
    early-stop record is its minimum for losses and its maximum otherwise
    (Keras' 'auto' mode).
    """
    loss: object = None        # serialized Keras loss (str or config dict)
    optimizer: object = None   # serialized Keras optimizer
    metrics: tuple = ()        # serialized Keras metrics, other than accuracy
    monitor: str = "val_loss"

    def __post_init__(self):
        valid = self.quantities()
        if self.monitor not in valid:
            raise ValueError(f"monitor must name a validation or test quantity the evaluation produces, "
                             f"one of {', '.join(valid)}; got {self.monitor!r}")

    @classmethod
    def from_compiled(cls, model, monitor="val_loss"):
        """The objective of a model compiled with a loss (and its optimizer and metrics)."""
        config = model.get_compile_config() if getattr(model, "compiled", False) else None
        if not config or config.get("loss") is None:
            return cls(monitor=monitor)
        if isinstance(config["loss"], (list, dict)) and not (
                isinstance(config["loss"], dict) and "class_name" in config["loss"]):
            raise ValueError("run_rounds takes models with one output and one loss; "
                             f"this model was compiled with loss={config['loss']!r}")
        metrics = tuple(m for m in (config.get("metrics") or ())
                        if not (isinstance(m, str) and m in _ACCURACY_NAMES))
        return cls(loss=config["loss"], optimizer=_canonical(config["optimizer"]), metrics=metrics,
                   monitor=monitor)

    def metric_names(self):
        """Names of the compiled metrics other than accuracy, as the evaluation reports them."""
        return tuple(metric.name for metric in self.make_metrics()) if self.metrics else ()

    def quantities(self):
        """Every evaluation field a monitor may name: val_ and test_ of loss, accuracy and each metric."""
        names = ("loss", "accuracy", *(n for n in self.metric_names() if n not in ("loss", "accuracy")))
        return tuple(f"{split}_{name}" for split in ("val", "test") for name in names)

    def record_fields(self, early, final):
        """Round-record fields of the early-stop and final evaluations beyond loss and accuracy:
        early_stop_ and final_ of val_ and test_ of each compiled metric, and early_stop_<monitor>."""
        fields = {}
        for name in self.metric_names():
            for split in ("val", "test"):
                fields[f"early_stop_{split}_{name}"] = early.get(f"{split}_{name}")
                fields[f"final_{split}_{name}"] = final.get(f"{split}_{name}")
        fields[f"early_stop_{self.monitor}"] = early.get(self.monitor)
        return fields

    @property
    def mode(self):
        return "min" if self.monitor.endswith("loss") else "max"

    def loss_function(self):
        """callable(labels, outputs) -> mean loss over the batch; None for the zoo's."""
        if self.loss is None:
            return None
        loss = keras.losses.get(self.loss)
        if not isinstance(loss, keras.losses.Loss):
            loss = keras.losses.LossFunctionWrapper(loss)
        return loss

    @property
    def from_logits(self):
        """Whether a single output unit is a logit (threshold 0) rather than a probability (0.5)."""
        config = self.loss.get("config", {}) if isinstance(self.loss, dict) else {}
        return bool(config.get("from_logits", False))

    def make_optimizer(self):
        """A fresh optimizer from the compiled config; None for the zoo's."""
        return None if self.optimizer is None else keras.optimizers.get(self.optimizer)

    def make_metrics(self):
        """Fresh metric objects for one evaluation."""
        metrics = []
        for serialized in self.metrics:
            metric = keras.metrics.get(serialized)
            if not isinstance(metric, keras.metrics.Metric):
                metric = keras.metrics.MeanMetricWrapper(metric, name=str(serialized))
            metrics.append(metric)
        return metrics

    def describe(self):
        """JSON-ready form for config.json."""
        return {"loss": self.loss, "optimizer": self.optimizer, "metrics": list(self.metrics),
                "monitor": self.monitor}
