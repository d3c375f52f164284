"""The table in docs/keras_fit.md of which Keras layer kinds tf_lottery prunes, made by trying each one.

  python tools/keras_layer_table.py write    # rebuild and try every layer kind, rewrite the table
  python tools/keras_layer_table.py check    # exit 1 if the page's table is not what the code does

Every class of `keras.layers` (aliases grouped) is built in a one-layer functional model named
`probe`, from the constructor arguments and inputs below (`ARGS`, `INPUTS`; recurrent cells inside
`keras.layers.RNN`), except the kinds in `NOT_BUILT`. The kinds that carry weights once built are
then tried:

1. `tfl.wrap(model)`; if it puts no wrapper on `probe`, `tfl.wrap(model, prunable={"probe": ...})`
   naming by attribute path the layer's kernels (trainable weights whose name ends in `kernel`),
   or all its trainable weights if it has no kernel;
2. a forward pass of the wrapped model, which must equal the original model's;
3. every masked weight set to random values and pruned by half (`tfl.prune`, `tfl.set_masks`);
4. the wrapped model's output must change and equal, bit for bit, the output of the original
   model holding the same weights with the pruned positions set to zero.

The first step that fails makes the kind "not supported", with the reason. The page is
regenerated, never edited by hand; a kind Keras adds later makes `check` fail until it is
given arguments here (or a reason in NOT_BUILT).
"""

import contextlib
import dataclasses
import inspect
import os
import pathlib
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import tf_lottery as tfl  # noqa: E402

PAGE = REPO / "docs" / "keras_fit.md"
MARK = "<!-- generated: keras_layers by tools/keras_layer_table.py write -->"
_BLOCK = re.compile(re.escape(MARK) + r"\n(?P<body>.*?)<!-- end generated -->", re.S)
PROBE = "probe"

# Kinds not built, and why.
NOT_BUILT = {
    "Layer": "the base class of all layers",
    "Wrapper": "the base class of layer wrappers (`Bidirectional`, `TimeDistributed`, ...)",
    "InputLayer": "a model's input, made by `keras.Input`",
    "FlaxLayer": "JAX backend only",
    "JaxLayer": "JAX backend only",
    "TorchModuleWrapper": "PyTorch backend only",
    "TFSMLayer": "needs a SavedModel on disk to load",
}

_RATE, _FACTOR, _SIZE = {"rate": 0.5}, {"factor": 0.1}, {"height": 4, "width": 4}
_CONV = {"filters": 3, "kernel_size": 3}
_AUDIO = {"fft_length": 16, "sequence_length": 16, "sequence_stride": 8}

# Constructor arguments of the kinds that need some; a callable gives arguments holding fresh layers.
ARGS = {
    "Activation": {"activation": "relu"},
    **{f"Adaptive{kind}Pooling{d}D": {"output_size": 2} for kind in ("Average", "Max") for d in (1, 2, 3)},
    **{f"AveragePooling{d}D": {"pool_size": 2} for d in (1, 2, 3)},
    **{name: _RATE for name in ("AlphaDropout", "Dropout", "GaussianDropout", "SpatialDropout1D",
                                "SpatialDropout2D", "SpatialDropout3D")},
    **{name: _CONV for name in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                                "Conv3DTranspose", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
                                "SeparableConv1D", "SeparableConv2D")},
    **{name: {"kernel_size": 3} for name in ("DepthwiseConv1D", "DepthwiseConv2D")},
    **{name: {"units": 3} for name in ("Dense", "GRU", "LSTM", "SimpleRNN", "GRUCell", "LSTMCell",
                                       "SimpleRNNCell")},
    **{name: _FACTOR for name in ("RandomBrightness", "RandomColorDegeneration", "RandomContrast",
                                  "RandomHue", "RandomRotation", "RandomSaturation", "RandomSharpness")},
    **{name: _SIZE for name in ("CenterCrop", "RandomCrop", "Resizing")},
    **{name: {"input_dim": 10, "output_dim": 3} for name in ("Embedding", "ReversibleEmbedding")},
    "Bidirectional": lambda: {"layer": keras.layers.LSTM(3)},
    "CategoryEncoding": {"num_tokens": 4},
    "Discretization": {"bin_boundaries": [0.0]},
    "Dot": {"axes": 1},
    "EinsumDense": {"equation": "ab,bc->ac", "output_shape": 3},
    "GaussianNoise": {"stddev": 0.1},
    "GroupNormalization": {"groups": 1},
    "GroupQueryAttention": {"head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 1},
    "HashedCrossing": {"num_bins": 4},
    "Hashing": {"num_bins": 4},
    "IntegerLookup": {"vocabulary": [1, 2, 3]},
    "Lambda": {"function": keras.ops.abs},
    "MaxNumBoundingBoxes": {"max_number": 2},
    "MelSpectrogram": {**_AUDIO, "num_mel_bins": 4, "sampling_rate": 800},
    "MultiHeadAttention": {"num_heads": 2, "key_dim": 2},
    "Permute": {"dims": (2, 1)},
    "Pipeline": lambda: {"layers": [keras.layers.Identity()]},
    "RNN": lambda: {"cell": keras.layers.GRUCell(3)},
    "RandomPosterization": {"factor": (1, 8)},
    "RandomTranslation": {"height_factor": 0.1, "width_factor": 0.1},
    "RandomZoom": {"height_factor": 0.1},
    "RepeatVector": {"n": 2},
    "Rescaling": {"scale": 0.5},
    "Reshape": {"target_shape": (-1,)},
    "STFTSpectrogram": {"frame_length": 16, "frame_step": 8, "fft_length": 16},
    "SpectralNormalization": lambda: {"layer": keras.layers.Dense(3)},
    "StackedRNNCells": lambda: {"cells": [keras.layers.GRUCell(3), keras.layers.GRUCell(2)]},
    "StringLookup": {"vocabulary": ["a", "b"]},
    "TextVectorization": {"vocabulary": ["a", "b"]},
    "TimeDistributed": lambda: {"layer": keras.layers.Dense(3)},
}

# Recurrent cells are layers that run inside keras.layers.RNN: they are tried there.
CELLS = ("GRUCell", "LSTMCell", "SimpleRNNCell", "StackedRNNCells")

_SEQUENCE, _VECTOR = ((6, 4), "float32"), ((4,), "float32")
# How a kind is called when the shapes in SHAPES do not do: (call, [(shape, dtype) per input]), where
# call is "one" (layer(x)), "list" (layer([a, b])) or "args" (layer(a, b)).
INPUTS = {
    **{name: ("list", [_VECTOR, _VECTOR]) for name in ("Add", "Average", "Concatenate", "Dot", "Maximum",
                                                       "Minimum", "Multiply", "Subtract")},
    **{name: ("list", [_SEQUENCE, _SEQUENCE]) for name in ("Attention", "AdditiveAttention")},
    **{name: ("args", [_SEQUENCE, _SEQUENCE]) for name in ("GroupQueryAttention", "MultiHeadAttention")},
    **{name: ("one", [((5,), "int32")]) for name in ("CategoryEncoding", "Embedding", "IntegerLookup",
                                                     "ReversibleEmbedding")},
    "MelSpectrogram": ("one", [((64,), "float32")]),
    "STFTSpectrogram": ("one", [((64, 1), "float32")]),
    **{name: ("one", [((1,), "string")]) for name in ("StringLookup", "TextVectorization")},
    "HashedCrossing": ("list", [((1,), "int32"), ((1,), "int32")]),
    "Hashing": ("one", [((1,), "int32")]),
}
# Per-example input shapes tried in order for the other kinds: image, sequence, vector, volume, video.
SHAPES = ((8, 8, 3), (6, 4), (4,), (4, 6, 6, 2), (3, 6, 6, 6, 2))


@dataclasses.dataclass(frozen=True)
class Row:
    """One layer kind: its names, the weights tf_lottery masks and what happens when it is wrapped."""
    names: tuple
    status: str  # "default", "prunable" or "unsupported"
    masked: tuple = ()
    reason: str = ""


def layer_kinds():
    """{name: [name, aliases]} for each Layer subclass in keras.layers (named as its class where it can be)."""
    kinds = {}
    for name in sorted(dir(keras.layers)):
        value = getattr(keras.layers, name)
        if inspect.isclass(value) and issubclass(value, keras.layers.Layer):
            kinds.setdefault(value, []).append(name)
    ordered = {}
    for cls, names in kinds.items():
        main = cls.__name__ if cls.__name__ in names else names[0]
        ordered[main] = [main] + [name for name in names if name != main]
    return dict(sorted(ordered.items()))


def _sample(shape, dtype, rng):
    if dtype == "string":
        return np.array([["a", "b"][i % 2] for i in range(2)], dtype=object).reshape((2,) + shape)
    if dtype.startswith("int"):
        return rng.integers(0, 4, size=(2,) + shape).astype(dtype)
    return rng.normal(size=(2,) + shape).astype(dtype)


def _make_layer(name):
    keras.utils.set_random_seed(0)
    args = ARGS.get(name, {})
    args = args() if callable(args) else dict(args)
    if name in CELLS:
        return keras.layers.RNN(getattr(keras.layers, name)(**args), name=PROBE)
    return getattr(keras.layers, name)(**args, name=PROBE)


def _call(layer, call, x):
    return layer(x) if call == "list" or not isinstance(x, list) else layer(*x)


def _samples(specs):
    rng = np.random.default_rng(0)
    samples = [_sample(shape, dtype, rng) for shape, dtype in specs]
    return samples if len(samples) > 1 else samples[0]


def probe_model(name):
    """(a functional model whose only layer is a fresh `name`, sample inputs), or (None, None) if the
    layer carries no weights once built; its inputs are INPUTS' or the first of SHAPES it takes."""
    tries = [INPUTS[name]] if name in INPUTS else [("one", [(shape, "float32")]) for shape in SHAPES]
    for call, specs in tries:
        inputs = [keras.Input(shape, dtype=dtype) for shape, dtype in specs]
        inputs = inputs if len(inputs) > 1 else inputs[0]
        layer = _make_layer(name)
        try:
            outputs = _call(layer, call, inputs)
            if not layer.weights:
                return None, None
            model, samples = keras.Model(inputs, outputs), _samples(specs)
            model(samples)  # a symbolic call checks less than a real one
        except Exception as error:  # noqa: BLE001 (each shape that does not fit fails its own way)
            failure = _first_line(error)
            continue
        return model, samples
    raise ValueError(f"keras.layers.{name} builds on none of {[s for _, s in tries]} ({failure}); give "
                     "it arguments in ARGS or inputs in INPUTS")


def _first_line(error):
    """The first line of an error's message that says what went wrong (not Keras' "Exception
    encountered when calling ..." heading), without terminal colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith("Exception encountered")]
    return lines[0] if lines else type(error).__name__


def attribute_path(layer, variable, depth=3):
    """The dotted attribute path from `layer` to `variable` (public names preferred), or None."""
    items = sorted(vars(layer).items(), key=lambda item: item[0].startswith("_"))
    for name, value in items:
        public = name.lstrip("_")
        if value is variable:
            with contextlib.suppress(Exception):
                if public != name and getattr(layer, public) is variable:
                    return public
            return name
    for name, value in items:
        if isinstance(value, keras.layers.Layer) and depth:
            found = attribute_path(value, variable, depth - 1)
            if found:
                public = name.lstrip("_")
                with contextlib.suppress(Exception):
                    if getattr(layer, public) is value:
                        return f"{public}.{found}"
                return f"{name}.{found}"
    return None


def _unreachable(layer, weight):
    """Why `weight` of `layer` has no attribute path (a dotted name cannot index a list)."""
    sublayers = [layer] + [value for value in vars(layer).values() if isinstance(value, keras.layers.Layer)]
    lists = [(name.startswith("_"), name, type(sublayer).__name__)
             for sublayer in sublayers for name, value in vars(sublayer).items()
             if isinstance(value, (list, tuple)) and any(
                 isinstance(item, keras.layers.Layer) and any(w is weight for w in item.weights)
                 for item in value)]
    if not lists:
        return f"weight `{weight.name}` is not reachable by attribute names"
    _, name, owner = min(lists)  # a public list (Keras keeps private ones for tracking)
    return f"its weights sit in the list `{name}` of {owner}, which a dotted `prunable=` name cannot index"


def _outputs(model, x):
    return [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(model(x, training=False))]


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def _wrap(model, layer):
    """(wrapped model, 'default' or 'prunable'); ValueError with the reason if it cannot be wrapped."""
    try:
        wrapped = tfl.wrap(model)
    except ValueError as error:  # the probe is the model's only layer: not wrapped by default
        if "has no prunable layer" not in str(error):
            raise
        wrapped = None
    if wrapped is not None and isinstance(wrapped.get_layer(PROBE), tfl.LotteryWrapper):
        return wrapped, "default"
    trainable = [w for w in layer.weights if w.trainable]
    if not trainable:
        names = ", ".join(f"`{w.name}`" for w in layer.weights)
        raise ValueError(f"no trainable weight ({names})")
    trainable = [w for w in trainable if w.name.endswith("kernel")] or trainable
    paths = [attribute_path(layer, weight) for weight in trainable]
    if None in paths:
        raise ValueError(_unreachable(layer, trainable[paths.index(None)]))
    return tfl.wrap(model, prunable={PROBE: tuple(paths)}), "prunable"


def _randomize(wrapped):
    """Random values in every masked weight (some start as constants: ones, zeros)."""
    rng = np.random.default_rng(1)
    for _, weight, _ in tfl.masked_weights(wrapped):
        weight.assign(rng.normal(size=weight.shape).astype(weight.dtype))


def _prune_by_half(wrapped):
    """Prunes half of every masked weight (by magnitude, as IMP does)."""
    masks = tfl.get_masks(wrapped)
    pruned = tfl.prune(tfl.effective_weights(wrapped), masks, {key: 0.5 for key in masks})
    tfl.set_masks(wrapped, {key: keras.ops.convert_to_numpy(mask) for key, mask in pruned.items()})


def _by_hand(model, wrapped):
    """Copies the wrapped layer's weights into the original one, pruned positions set to zero."""
    wrapper = wrapped.get_layer(PROBE)
    zeroed = {id(weight): np.where(keras.ops.convert_to_numpy(mask) != 0,
                                   keras.ops.convert_to_numpy(weight), 0)
              for _, weight, mask in wrapper.masked_weights}
    model.get_layer(PROBE).set_weights([zeroed.get(id(w), keras.ops.convert_to_numpy(w))
                                        for w in wrapper.layer.weights])


def classify(name, names):
    """The Row of the kind `name` (its aliases `names`), or None if it carries no weights."""
    model, x = probe_model(name)
    if model is None:
        return None
    layer = model.get_layer(PROBE)
    try:
        wrapped, status = _wrap(model, layer)
        masked = tuple(attr for attr in wrapped.get_layer(PROBE).prunable)
        if not _same(_outputs(wrapped, x), _outputs(model, x)):
            raise ValueError("the wrapped model's output differs from the model's")
        _randomize(wrapped)
        before = _outputs(wrapped, x)
        _prune_by_half(wrapped)
        pruned = _outputs(wrapped, x)
        _by_hand(model, wrapped)
        if _same(pruned, before):
            raise ValueError("pruning does not change the output")
        if not _same(pruned, _outputs(model, x)):
            raise ValueError("the output differs from the layer's with the pruned weights set to zero")
    except Exception as error:  # noqa: BLE001 (whatever fails, the reason goes in the table)
        return Row(tuple(names), "unsupported", reason=_first_line(error))
    return Row(tuple(names), status, masked)


def rows():
    """(the Rows of the kinds with weights, [names of the kinds without]) over keras.layers."""
    with_weights, without = [], []
    for name, names in layer_kinds().items():
        if name in NOT_BUILT:
            continue
        row = classify(name, names)
        if row is None:
            without.append(name)
        else:
            with_weights.append(row)
    return with_weights, without


_STATUS = {"default": "wrapped by default", "prunable": "wrapped with `prunable=`",
           "unsupported": "not supported"}


def _label(row):
    name, aliases = row.names[0], row.names[1:]
    shown = f"`{name}` in `RNN`" if name in CELLS else f"`{name}`"
    return shown + (f" (`{'`, `'.join(aliases)}`)" if aliases else "")


def render(with_weights, without):
    """The generated block's body: the table, the counts and the kinds left out."""
    ordered = sorted(with_weights, key=lambda r: (list(_STATUS).index(r.status), r.names[0]))
    lines = ["| layer | masked weights | `tfl.wrap` |", "| --- | --- | --- |"]
    for row in ordered:
        masked = ", ".join(f"`{attr}`" for attr in row.masked)
        status = _STATUS[row.status] + (f": {row.reason}" if row.reason else "")
        lines.append(f"| {_label(row)} | {masked} | {status} |")
    counts = {status: sum(r.status == status for r in with_weights) for status in _STATUS}
    lines += ["", f"Keras {keras.__version__}: {len(with_weights)} layer kinds carry weights; "
              f"{counts['default']} are wrapped by default, {counts['prunable']} with `prunable=` and "
              f"{counts['unsupported']} are not supported. {len(without)} kinds carry no weights: "
              + ", ".join(f"`{name}`" for name in without) + ". Not built: "
              + "; ".join(f"`{name}` ({reason})" for name, reason in NOT_BUILT.items()) + "."]
    return "\n".join(lines) + "\n"


def regenerate(text, body):
    """`text` with the generated block's body replaced by `body`; ValueError if it has no block."""
    if not _BLOCK.search(text):
        raise ValueError(f"{PAGE} has no block after {MARK}")
    return _BLOCK.sub(lambda _: f"{MARK}\n{body}<!-- end generated -->", text, count=1)


def main(argv):
    if len(argv) != 2 or argv[1] not in ("write", "check"):
        print("usage: python tools/keras_layer_table.py write | check")
        return 2
    text = PAGE.read_text()
    new = regenerate(text, render(*rows()))
    if argv[1] == "write":
        PAGE.write_text(new)
        print(f"wrote {PAGE}")
        return 0
    if new != text:
        print(f"{PAGE}'s layer table differs from what the code does: python tools/keras_layer_table.py write")
        return 1
    print(f"{PAGE}'s layer table matches")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
