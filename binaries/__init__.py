"""absl programs of tf_lottery: flags in, a config object, a call into the package."""

import logging

# tf_lottery hides TensorFlow's C++ start-up lines (see tf_lottery/__init__.py).
# TensorFlow's Python logger reports every checkpoint write at INFO.
logging.getLogger("tensorflow").setLevel(logging.WARNING)
