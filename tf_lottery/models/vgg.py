"""VGG-16 and VGG-19 for CIFAR as in the lottery-ticket papers (OpenLTH cifar_vgg_16/19)."""

import itertools

from etils import epy

from tf_lottery.models.registry import REGISTRY

with epy.lazy_imports():
    import keras

_PLANS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512),
}


def vgg_net(depth, input_shape=(32, 32, 3), num_classes=10, seed=0, width=1):
    """3x3 conv, batch norm, ReLU per plan entry, 2x2 max-pool at "M", global average pool, Dense.

    The last VGG max-pool is replaced by global average pooling, which for
    32x32 inputs (2x2 feature maps) is what OpenLTH's final AvgPool2d(2) does.
    Kernels are He normal (layer i gets seed + i). Convs have no bias, since
    batch norm follows; `width` scales the number of filters.
    """
    if depth not in _PLANS:
        raise ValueError(f"vgg_net depth must be one of {sorted(_PLANS)}, got {depth}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    seeds = itertools.count(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    conv = pool = 0
    for entry in _PLANS[depth]:
        if entry == "M":
            pool += 1
            x = keras.layers.MaxPooling2D(2, name=f"pool{pool}")(x)
            continue
        conv += 1
        x = keras.layers.Conv2D(
            max(1, int(round(entry * width))), 3, padding="same", use_bias=False,
            name=f"conv{conv}", kernel_initializer=keras.initializers.HeNormal(seed=next(seeds)))(x)
        # PyTorch's batch-norm defaults, as in the papers' code (Keras': 0.99, 1e-3).
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn{conv}")(x)
        x = keras.layers.ReLU(name=f"relu{conv}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = keras.layers.Dense(
        num_classes, name="output", kernel_initializer=keras.initializers.HeNormal(seed=next(seeds)))(x)
    suffix = "" if width == 1 else f"_w{width:g}"
    return keras.Model(inputs, outputs, name=f"vgg{depth}{suffix}")


@REGISTRY.register("vgg16")
def vgg16(input_shape=(32, 32, 3), num_classes=10, seed=0, **options):
    """CIFAR VGG-16: 13 convs (64x2, 128x2, 256x3, 512x3, 512x3), 14.7M weights."""
    return vgg_net(16, input_shape, num_classes, seed, **options)


@REGISTRY.register("vgg19")
def vgg19(input_shape=(32, 32, 3), num_classes=10, seed=0, **options):
    """CIFAR VGG-19: 16 convs (64x2, 128x2, 256x4, 512x4, 512x4), 20.0M weights."""
    return vgg_net(19, input_shape, num_classes, seed, **options)
