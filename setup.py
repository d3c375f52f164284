"""tf_lottery: lottery-ticket experiments for Keras 3 and TensorFlow."""

import re

from setuptools import find_packages, setup

# The version is declared once, in tf_lottery/__init__.py.
VERSION = re.search(r'^__version__ = "([^"]+)"', open("tf_lottery/__init__.py").read(), re.M).group(1)

setup(
    name="tf_lottery",
    version=VERSION,
    description="Find and study lottery tickets (IMP with reset and rewind) in Keras 3 / TensorFlow.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tf_lottery", "tf_lottery.*", "binaries"]),
    package_data={"tf_lottery": ["data_files/mnist_small/*.gz", "data_files/mnist_small/README.md"]},
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9,<5",
        "absl-py>=1.4,<3",
        "matplotlib>=3.7,<4",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",  # Student t quantiles and p-values of the study statistics (TOST, Holm)
        "importlib_resources>=6",  # TFDS needs it to download and prepare datasets
        "etils[epy]>=1.5,<2",  # lazy module-level imports: settings are checked before TF loads
        # studies (binaries.study, --replicates): local Ray or a cluster; 2.59 is the first Ray whose
        # local ray.init turns token authentication on by default (tf_lottery.study.local_ray)
        "ray[default]>=2.59,<3",
        "psutil>=5.9",  # the local Ray's watchdog (tf_lottery/study/watchdog.py)
    ],
    extras_require={
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    },
    entry_points={"console_scripts": [
        "tf-lottery=binaries.lottery:run_main",
        "tf-lottery-train=binaries.train:run_main",
        "tf-lottery-branch=binaries.branch:run_main",
        "tf-lottery-export=binaries.export:run_main",
        "tf-lottery-analyze=binaries.analyze:run_main",
        "tf-lottery-study=binaries.study:run_main",
    ]},
)
