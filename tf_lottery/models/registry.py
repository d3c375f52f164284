"""The model registry: zoo builders by name (each registered next to its code)."""

from tf_lottery.registry import Registry

REGISTRY = Registry("model")
