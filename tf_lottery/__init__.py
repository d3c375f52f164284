"""tf_lottery: lottery-ticket experiments for Keras 3 and TensorFlow.

Attributes load on first use, so that `tf_lottery.config` and
`tf_lottery.data` can check settings and files without importing TensorFlow.
Importing the package still imports neither TensorFlow nor Keras; it arranges
(tf_lottery.import_hooks) that the wrappers register with Keras as soon as
Keras loads, so `keras.models.load_model` reads `.keras` files holding
them, and it sets TF_CPP_MIN_LOG_LEVEL=3 unless already set, which hides
TensorFlow's C++ start-up log.
"""

from tf_lottery import import_hooks
from tf_lottery import lazy

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "tf_lottery.settings",
    "DataConfig": "tf_lottery.config",
    "ExperimentConfig": "tf_lottery.config",
    "LotteryConfig": "tf_lottery.config",
    "ModelConfig": "tf_lottery.config",
    "PruningConfig": "tf_lottery.config",
    "RunConfig": "tf_lottery.config",
    "TrainingConfig": "tf_lottery.config",
    "LotteryWrapper": "tf_lottery.wrapper",
    "Trainer": "tf_lottery.training",
    "prune": "tf_lottery.pruning",
    "get_masks": "tf_lottery.model_ops",
    "effective_weights": "tf_lottery.model_ops",
    "raw_weights": "tf_lottery.model_ops",
    "masked_weights": "tf_lottery.model_ops",
    "reset": "tf_lottery.model_ops",
    "set_masks": "tf_lottery.model_ops",
    "snapshot": "tf_lottery.model_ops",
    "sparsity_report": "tf_lottery.model_ops",
    "strip": "tf_lottery.model_ops",
    "summary": "tf_lottery.model_ops",
    "wrap": "tf_lottery.model_ops",
    "wrappers": "tf_lottery.model_ops",
    "load_ticket": "tf_lottery.export.compressed",
    "save_ticket": "tf_lottery.export.compressed",
    "PruneDuringFit": "tf_lottery.callbacks",
    "RewindSnapshot": "tf_lottery.callbacks",
}
_SUBMODULES = ("analysis", "atomic", "callbacks", "config", "connectivity", "controls", "data",
               "distribute", "edge_popup", "experiment", "export", "flags", "imp", "input_pipeline",
               "model_ops", "models", "objective", "plots", "pruning", "registry", "report", "results",
               "rounds", "schedules", "settings", "shrink", "study", "supermask", "tensorboard",
               "training", "wrapper")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)
__getattr__, __dir__ = lazy.attributes(__name__, _EXPORTS, _SUBMODULES)

import_hooks.install()
