"""LeNet-300-100 and its variants: fully connected networks for MNIST-sized inputs."""

from etils import epy

from tf_lottery.models.registry import REGISTRY, takes_dropout

with epy.lazy_imports():
    import keras


@REGISTRY.register("lenet")
@takes_dropout
def lenet(input_shape=(28, 28, 1), num_classes=10, hidden=(300, 100), seed=0, width=1, dropout=0.0):
    """A fully connected ReLU network, Glorot-normal kernels and zero biases (Frankle & Carbin 2019).

    `width` scales the hidden layers; `dropout` > 0 adds dropout after each of them.
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    hidden = [max(1, int(round(units * width))) for units in hidden]
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(
            units, activation="relu", name=f"fc{i + 1}",
            kernel_initializer=keras.initializers.GlorotNormal(seed=seed + i))(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed + 1000 + i, name=f"dropout{i + 1}")(x)
    outputs = keras.layers.Dense(
        num_classes, name="output",
        kernel_initializer=keras.initializers.GlorotNormal(seed=seed + len(hidden)))(x)
    name = "lenet_" + "_".join(str(w) for w in hidden)
    return keras.Model(inputs, outputs, name=name)
