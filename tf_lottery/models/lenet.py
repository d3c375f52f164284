"""LeNet-300-100 and its variants: fully connected networks for MNIST-sized inputs."""

from etils import epy

from tf_lottery.models.registry import REGISTRY

with epy.lazy_imports():
    import keras


@REGISTRY.register("lenet")
def lenet(input_shape=(28, 28, 1), num_classes=10, hidden=(300, 100), seed=0):
    """A fully connected ReLU network, Glorot-normal kernels and zero biases (Frankle & Carbin 2019)."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(
            width, activation="relu", name=f"fc{i + 1}",
            kernel_initializer=keras.initializers.GlorotNormal(seed=seed + i))(x)
    outputs = keras.layers.Dense(
        num_classes, name="output",
        kernel_initializer=keras.initializers.GlorotNormal(seed=seed + len(hidden)))(x)
    name = "lenet_" + "_".join(str(w) for w in hidden)
    return keras.Model(inputs, outputs, name=name)
