"""The model zoo: builders by name."""

from tf_lottery.models.conv import conv2, conv4, conv6
from tf_lottery.models.lenet import lenet
from tf_lottery.models.resnet import resnet18, resnet20, resnet50, resnet56
from tf_lottery.models.vgg import vgg16, vgg19

BUILDERS = {
    "lenet": lenet,
    "conv2": conv2,
    "conv4": conv4,
    "conv6": conv6,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "resnet18": resnet18,
    "resnet50": resnet50,
}


def build(name, input_shape, num_classes, seed=0, **kwargs):
    """Builds zoo model `name` with seeded initialisers; kwargs go to the builder."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model '{name}'; choose one of {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](input_shape=input_shape, num_classes=num_classes, seed=seed, **kwargs)
