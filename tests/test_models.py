"""The model zoo: shapes, published weight counts, seeding, and wrap / train / strip on every model."""

import functools

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from conftest import make_splits, tiny_training
from tf_lottery import models

# Every zoo model at CIFAR size; the ImageNet ResNets with their 32x32 stem to stay fast.
CIFAR_MODELS = {
    "conv2": {}, "conv4": {}, "conv6": {}, "vgg16": {}, "vgg19": {},
    "resnet20": {}, "resnet56": {}, "resnet18": {"cifar_stem": True}, "resnet50": {"cifar_stem": True},
}
SHAPE, CLASSES = (32, 32, 3), 10

# Conv and dense kernels on 32x32x3 inputs with 10 classes, counted by hand from the layer lists.
PRUNABLE = {
    "conv2": 4_300_992, "conv4": 2_425_024, "conv6": 2_261_184, "vgg16": 14_715_584,
    "vgg19": 20_024_000, "resnet20": 270_896, "resnet56": 851_504, "resnet18": 11_164_352,
    "resnet50": 23_467_712,
}
# Frankle & Carbin (2019), Figure 2: all weights, and conv weights alone.
PUBLISHED = {"conv2": 4.3e6, "conv4": 2.4e6, "vgg19": 20.0e6, "resnet20": 0.27e6}
PUBLISHED_CONV = {"conv2": 38e3, "conv4": 260e3, "resnet20": 270e3}


@functools.lru_cache(maxsize=None)
def built(name, seed=0):
    """One shared build per (name, seed); tests copy it (wrap) or only read it."""
    return models.build(name, input_shape=SHAPE, num_classes=CLASSES, seed=seed, **CIFAR_MODELS[name])


def kernels(model, types=(keras.layers.Conv2D, keras.layers.Dense)):
    return {layer.name: layer.kernel for layer in model.layers if isinstance(layer, types)}


def count(model, types=(keras.layers.Conv2D, keras.layers.Dense)):
    return sum(int(np.prod(kernel.shape)) for kernel in kernels(model, types).values())


def images(n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + SHAPE).astype(np.float32)


def test_builders_are_registered():
    assert set(CIFAR_MODELS) | {"lenet"} == set(models.REGISTRY.names())
    with pytest.raises(ValueError, match="unknown model 'resnet21'"):
        models.build("resnet21", SHAPE, CLASSES)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_builds_with_named_layers_and_a_logits_output(name):
    model = built(name)
    assert model.name.startswith(name)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    output = model.layers[-1]
    assert output.name == "output" and isinstance(output, keras.layers.Dense)
    assert output.activation is keras.activations.linear
    logits = keras.ops.convert_to_numpy(model(images(2), training=False))
    assert logits.shape == (2, CLASSES) and np.all(np.isfinite(logits))
    assert not np.allclose(logits.sum(axis=1), 1.0)  # logits, not probabilities


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_prunable_weight_counts(name):
    model = built(name)
    assert count(model) == PRUNABLE[name]
    if name in PUBLISHED:
        assert count(model) == pytest.approx(PUBLISHED[name], rel=0.02)
    if name in PUBLISHED_CONV:
        assert count(model, keras.layers.Conv2D) == pytest.approx(PUBLISHED_CONV[name], rel=0.02)


def test_conv6_has_the_published_conv_weights_but_not_the_published_total():
    # The paper lists 1.7M weights (1.1M in convs) for Conv-6, yet its layers
    # (64-64-128-128-256-256, three pools, FC 256-256-10) hold 2.26M on 32x32
    # inputs: 4*4*256*256 weights in fc1 alone. The conv count agrees.
    model = built("conv6")
    assert count(model, keras.layers.Conv2D) == 1_144_512  # "1.1M"
    assert kernels(model)["fc1"].shape == (4 * 4 * 256, 256)


def test_imagenet_resnet_parameter_counts():
    """torchvision's counts: 25,557,032 and 11,689,512 trainable parameters (BN scale and shift included)."""
    resnet50 = models.build("resnet50", input_shape=(224, 224, 3), num_classes=1000)
    trainable = sum(int(np.prod(w.shape)) for w in resnet50.trainable_weights)
    assert trainable == 25_557_032
    assert trainable == pytest.approx(25.5e6, abs=0.1e6)
    assert resnet50.count_params() == 25_610_152  # plus the batch-norm moving statistics
    assert count(resnet50) == 25_502_912
    assert resnet50.output.shape == (None, 1000)

    resnet18 = models.build("resnet18", input_shape=(224, 224, 3), num_classes=1000)
    assert sum(int(np.prod(w.shape)) for w in resnet18.trainable_weights) == 11_689_512


def test_cifar_stem_replaces_the_imagenet_stem():
    imagenet = models.build("resnet18", input_shape=SHAPE, num_classes=CLASSES)
    cifar = built("resnet18")
    assert imagenet.get_layer("stem_conv").kernel.shape == (7, 7, 3, 64)
    assert cifar.get_layer("stem_conv").kernel.shape == (3, 3, 3, 64)
    assert "stem_pool" in [layer.name for layer in imagenet.layers]
    assert "stem_pool" not in [layer.name for layer in cifar.layers]
    assert imagenet.get_layer("avgpool").input.shape[1:3] == (1, 1)
    assert cifar.get_layer("avgpool").input.shape[1:3] == (4, 4)


def test_width_scales_the_filters():
    assert models.build("conv2", SHAPE, CLASSES, width=0.5).get_layer("conv1").kernel.shape == (3, 3, 3, 32)
    assert models.build("resnet20", SHAPE, CLASSES, width=2).get_layer("stem_conv").kernel.shape == (3, 3, 3, 32)
    assert models.build("vgg16", SHAPE, CLASSES, width=0.25).get_layer("conv13").kernel.shape == (3, 3, 128, 128)
    with pytest.raises(ValueError, match="width"):
        models.build("resnet20", SHAPE, CLASSES, width=0)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_seed_alone_decides_the_weights(name):
    first, again, other = built(name, 0), models.build(
        name, SHAPE, CLASSES, seed=0, **CIFAR_MODELS[name]), built(name, 1)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    first_kernels, other_kernels = kernels(first), kernels(other)
    for layer, kernel in first_kernels.items():
        assert not np.array_equal(kernel.numpy(), other_kernels[layer].numpy()), layer
    # Each layer has its own seed: no two kernels of the same shape are equal.
    by_shape = {}
    for layer, kernel in first_kernels.items():
        value = kernel.numpy()
        for other_layer in by_shape.get(value.shape, []):
            assert not np.array_equal(value, first_kernels[other_layer].numpy()), (layer, other_layer)
        by_shape.setdefault(value.shape, []).append(layer)


@pytest.fixture(scope="module")
def cifar_splits():
    return make_splits(n_train=16, n_val=8, n_test=8, shape=SHAPE, classes=CLASSES)


# ResNet-50 and ResNet-56 train for 7-15 s each: run by hand with -m slow (their shapes and seeding stay in the
# default suite; ResNet-18 and ResNet-20 train here).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("resnet50", "resnet56") else n
                                  for n in CIFAR_MODELS])
def test_wrap_train_and_strip(name, cifar_splits):
    model = built(name)
    x = images()
    wrapped = tfl.wrap(model)

    wrapped_names = {w.name for w in tfl.wrappers(wrapped)}
    assert wrapped_names == set(kernels(model))
    assert all(isinstance(w.layer, (keras.layers.Conv2D, keras.layers.Dense)) for w in tfl.wrappers(wrapped))
    batch_norms = [layer for layer in wrapped.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms) == sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    np.testing.assert_allclose(wrapped(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-5)

    before = model.get_layer("output").kernel.numpy().copy()
    # Tracing dominates here; XLA and Adam's extra slots would make it about twice as slow.
    config = tiny_training(train_steps=5, eval_every=5, batch_size=8, eval_batch_size=8,
                           steps_per_call=5, optimizer="sgd", learning_rate=1e-3, jit_compile=False)
    result = tfl.Trainer(wrapped, cifar_splits, config).train()
    assert [record["iteration"] for record in result.curve] == [0, 5]
    assert np.isfinite(result.curve[-1]["train_loss"])
    assert not np.array_equal(wrapped.get_layer("output").layer.kernel.numpy(), before)
    np.testing.assert_array_equal(model.get_layer("output").kernel.numpy(), before)  # a copy was trained

    rng = np.random.default_rng(0)
    tfl.set_masks(wrapped, {key: (rng.random(mask.shape) < 0.5).astype(np.float32)
                            for key, mask in tfl.get_masks(wrapped).items()})
    stripped = tfl.strip(wrapped)
    assert not tfl.wrappers(stripped)
    np.testing.assert_allclose(stripped(x, training=False), wrapped(x, training=False), rtol=1e-5, atol=1e-5)
    masks = tfl.get_masks(wrapped)
    for layer, kernel in kernels(stripped).items():
        assert np.all(kernel.numpy()[masks[f"{layer}/kernel"] == 0] == 0), layer
