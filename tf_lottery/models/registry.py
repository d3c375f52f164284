"""The model registry: zoo builders by name (each registered next to its code)."""

from tf_lottery.registry import Registry

REGISTRY = Registry("model")


def takes_dropout(builder):
    """Marks a zoo builder that takes `dropout` (the rate after each hidden dense layer)."""
    builder.takes_dropout = True
    return builder


def accepts_dropout(name):
    """Whether the registered model `name` takes --dropout."""
    return name in REGISTRY and bool(getattr(REGISTRY.get(name), "takes_dropout", False))
