"""Residual networks (He et al. 2016): CIFAR ResNet-20/56 and ImageNet ResNet-18/50.

Convs are followed by batch norm and have no bias; a 1x1 conv and batch norm
project the shortcut whenever a block changes the shape (OpenLTH, torchvision).
Kernels are He normal, each layer seeded seed + i in the order it is built.
"""

import itertools

from etils import epy

from tf_lottery.models.registry import REGISTRY

with epy.lazy_imports():
    import keras


def _scaled(filters, width):
    return max(1, int(round(filters * width)))


class _Builder:
    """Adds named conv / batch-norm / ReLU layers, handing each new kernel the next seed."""

    def __init__(self, seed):
        self._seeds = itertools.count(seed)

    def initializer(self):
        return keras.initializers.HeNormal(seed=next(self._seeds))

    def conv_bn(self, x, filters, kernel, stride, name, relu=True):
        x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                kernel_initializer=self.initializer(), name=f"{name}_conv")(x)
        # PyTorch's batch-norm defaults, as in the papers' code (Keras': 0.99, 1e-3).
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x

    def _shortcut(self, x, filters, stride, name):
        if stride == 1 and x.shape[-1] == filters:
            return x
        return self.conv_bn(x, filters, 1, stride, f"{name}_shortcut", relu=False)

    def basic_block(self, x, filters, stride, name):
        """Two 3x3 convs; the first one strides."""
        shortcut = self._shortcut(x, filters, stride, name)
        y = self.conv_bn(x, filters, 3, stride, f"{name}_1")
        y = self.conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
        y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
        return keras.layers.ReLU(name=f"{name}_out")(y)

    def bottleneck_block(self, x, filters, stride, name):
        """1x1 reduce, 3x3 (strided, as in torchvision's ResNet v1.5), 1x1 expand to 4x filters."""
        shortcut = self._shortcut(x, 4 * filters, stride, name)
        y = self.conv_bn(x, filters, 1, 1, f"{name}_1")
        y = self.conv_bn(y, filters, 3, stride, f"{name}_2")
        y = self.conv_bn(y, 4 * filters, 1, 1, f"{name}_3", relu=False)
        y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
        return keras.layers.ReLU(name=f"{name}_out")(y)

    def stages(self, x, block, filters, blocks, first_stride):
        for stage, (width, count) in enumerate(zip(filters, blocks)):
            for i in range(count):
                stride = (first_stride if stage == 0 else 2) if i == 0 else 1
                x = block(x, width, stride, f"stage{stage + 1}_block{i + 1}")
        return x

    def head(self, x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=self.initializer(),
                                  name="output")(x)


def _check_width(width):
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10, seed=0, width=1):
    """ResNet-(6n+2) for CIFAR: a 3x3 stem, three stages of n basic blocks at 16, 32, 64 filters.

    `width` scales all filters (OpenLTH's cifar_resnet_D_W has W = 16 * width).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    _check_width(width)
    n = (depth - 2) // 6
    filters = [_scaled(f, width) for f in (16, 32, 64)]
    builder = _Builder(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    x = builder.conv_bn(inputs, filters[0], 3, 1, "stem")
    x = builder.stages(x, builder.basic_block, filters, (n, n, n), first_stride=1)
    outputs = builder.head(x, num_classes)
    suffix = "" if width == 1 else f"_w{width:g}"
    return keras.Model(inputs, outputs, name=f"resnet{depth}{suffix}")


_IMAGENET_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                    50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
                    152: ("bottleneck", (3, 8, 36, 3))}


def imagenet_resnet(depth, input_shape=(224, 224, 3), num_classes=1000, seed=0,
                    cifar_stem=False, width=1):
    """ImageNet ResNet: 7x7 stride-2 stem and 3x3 stride-2 max-pool, four stages at 64-512 filters.

    With `cifar_stem` the stem is a 3x3 stride-1 conv without max-pool, for
    32x32 inputs. `width` scales all filters.
    """
    if depth not in _IMAGENET_BLOCKS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(_IMAGENET_BLOCKS)}, got {depth}")
    _check_width(width)
    kind, blocks = _IMAGENET_BLOCKS[depth]
    filters = [_scaled(f, width) for f in (64, 128, 256, 512)]
    builder = _Builder(seed)
    block = builder.basic_block if kind == "basic" else builder.bottleneck_block
    inputs = keras.Input(shape=input_shape, name="image")
    if cifar_stem:
        x = builder.conv_bn(inputs, filters[0], 3, 1, "stem")
    else:
        x = builder.conv_bn(inputs, filters[0], 7, 2, "stem")
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    x = builder.stages(x, block, filters, blocks, first_stride=1)
    outputs = builder.head(x, num_classes)
    suffix = ("_cifar" if cifar_stem else "") + ("" if width == 1 else f"_w{width:g}")
    return keras.Model(inputs, outputs, name=f"resnet{depth}{suffix}")


@REGISTRY.register("resnet20")
def resnet20(input_shape=(32, 32, 3), num_classes=10, seed=0, **options):
    """CIFAR ResNet-20: 3 basic blocks per stage, 0.27M weights."""
    return cifar_resnet(20, input_shape, num_classes, seed, **options)


@REGISTRY.register("resnet56")
def resnet56(input_shape=(32, 32, 3), num_classes=10, seed=0, **options):
    """CIFAR ResNet-56: 9 basic blocks per stage, 0.85M weights."""
    return cifar_resnet(56, input_shape, num_classes, seed, **options)


@REGISTRY.register("resnet18")
def resnet18(input_shape=(224, 224, 3), num_classes=1000, seed=0, **options):
    """ImageNet ResNet-18: basic blocks 2-2-2-2, 11.69M parameters; cifar_stem=True for 32x32 inputs."""
    return imagenet_resnet(18, input_shape, num_classes, seed, **options)


@REGISTRY.register("resnet50")
def resnet50(input_shape=(224, 224, 3), num_classes=1000, seed=0, **options):
    """ImageNet ResNet-50: bottleneck blocks 3-4-6-3, 25.56M parameters; cifar_stem=True for 32x32 inputs."""
    return imagenet_resnet(50, input_shape, num_classes, seed, **options)
