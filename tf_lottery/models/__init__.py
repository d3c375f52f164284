"""The model zoo: builders by name, registered in their modules.

A builder is `f(input_shape, num_classes, seed=0, **options)` returning a
Keras model with seeded initialisers; `@REGISTRY.register(name)` adds one.
"""

# Imported in the order their models are listed; each module registers its builders.
from tf_lottery.models import lenet, conv, vgg, resnet  # noqa: F401,I001
from tf_lottery.models.registry import REGISTRY, accepts_dropout  # noqa: F401


def build(name, input_shape, num_classes, seed=0, **kwargs):
    """Builds zoo model `name` with seeded initialisers; kwargs go to the builder."""
    return REGISTRY.get(name)(input_shape=input_shape, num_classes=num_classes, seed=seed, **kwargs)
