"""Datasets by name: each source module registers its datasets in REGISTRY, and `load` looks one up."""

# Importing this package loads no TensorFlow; a streamed split or TFDS loads it on first use.

import numpy as np

from tf_lottery.data.splits import (INPUT_SCALINGS, REGISTRY, DataError, InMemoryDataset, Splits, hold_out,
                                    pixel_stats, takes_image_size, with_scaling,
                                    with_train_size)
from tf_lottery.data.tfds import LocalOrTfds
# The source modules register their datasets on import, in this order.
from tf_lottery.data.idx import bundled_dir, read_idx, read_idx_dir
from tf_lottery.data.cifar import read_cifar_dir
from tf_lottery.data.imagenet import (IMAGENET, IMAGENET_MEAN, IMAGENET_STD, StreamedSplits, imagenet_eval,
                                      imagenet_eval_image, imagenet_split_sizes, imagenet_train,
                                      imagenet_train_image, load_imagenet)
from tf_lottery.data.image_decoding import decode_image
from tf_lottery.data.image_files import ImageLimits
from tf_lottery.data.image_folder import CIFAR10_CLASSES, ImageFolder, StreamedImageFolder
from tf_lottery.data.user import DatasetSplits, as_splits
from tf_lottery.registry import UnknownEntry

__all__ = [
    "DATASETS", "DatasetSplits", "IMAGENET", "IMAGENET_MEAN", "IMAGENET_STD", "REGISTRY", "SHAPES", "DataError",
    "InMemoryDataset", "LocalOrTfds", "Splits", "StreamedSplits", "bundled_dir", "hold_out",
    "imagenet_eval", "imagenet_eval_image", "imagenet_split_sizes", "imagenet_train",
    "imagenet_train_image", "as_splits", "load", "load_imagenet", "pixel_stats", "read_cifar_dir", "read_idx",
    "read_idx_dir",
    "CIFAR10_CLASSES", "ImageFolder", "ImageLimits", "StreamedImageFolder", "decode_image", "takes_image_size",
    "INPUT_SCALINGS", "with_scaling", "with_train_size",
]


def __getattr__(name):
    # Read from the registry on each use, so a dataset registered later is listed too.
    if name == "DATASETS":  # the registered names, in registration order
        return REGISTRY.names()
    if name == "SHAPES":  # name -> (image shape, number of classes), known without loading
        entries = {key: REGISTRY.get(key) for key in REGISTRY}
        return {key: (entry.input_shape, entry.num_classes) for key, entry in entries.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(name, data_dir=None, validation_size=5000, seed=0, image_size=224, image_limits=None):
    """Loads a dataset into memory and holds out a seeded validation split from the training set.

    mnist_small is read from the package; mnist and fashion_mnist from IDX files,
    cifar10 and cifar100 from the extracted python or binary archives (the
    archive folder or its parent), or any of them from a prepared TFDS folder in
    data_dir; through TFDS (which may download) if data_dir is None.
    imagenet2012 is not loaded but streamed (StreamedSplits, at `image_size`).
    Datasets of image files (image_folder, cifar10_jpeg) read them within
    `image_limits` (an ImageLimits; default: ImageLimits()).
    """
    try:
        dataset = REGISTRY.get(name)
    except UnknownEntry as error:
        raise DataError(str(error)) from None
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, np.integer)):
        raise DataError(f"validation_size must be an integer, got {validation_size!r}")
    if getattr(dataset, "reads_image_files", False):
        return dataset.load(data_dir, validation_size, seed, image_size, limits=image_limits or ImageLimits())
    return dataset.load(data_dir, validation_size, seed, image_size)
