"""The model zoo: builders by name."""

from tf_lottery.models.lenet import lenet

BUILDERS = {"lenet": lenet}


def build(name, input_shape, num_classes, seed=0, **kwargs):
    """Builds zoo model `name` with seeded initialisers; kwargs go to the builder."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model '{name}'; choose one of {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](input_shape=input_shape, num_classes=num_classes, seed=seed, **kwargs)
