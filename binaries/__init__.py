"""absl programs of tf_lottery: flags in, a config object, a call into the package."""

import logging
import os

# Hide TensorFlow's C++ start-up notices (no GPU found, and so on) unless asked for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's Python logger reports every checkpoint write at INFO.
logging.getLogger("tensorflow").setLevel(logging.WARNING)
