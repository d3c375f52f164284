"""Three IMP rounds from Python on a small transformer block and an LSTM text model (synthetic counting task).

  python tools/demo_attention_lstm.py [OUTPUT_DIR]
"""

import sys

import keras
import numpy as np

import tf_lottery as tfl

OUTPUT = sys.argv[1] if len(sys.argv) > 1 else "experiments/demo"
rng = np.random.default_rng(0)
VOCAB, LENGTH = 200, 24


def text_data(n):
    # Class 1 when token 7 appears more often than token 9 (0-4 of each, anywhere): a counting task.
    x = rng.integers(10, VOCAB, size=(n, LENGTH))
    for i in range(n):
        k7, k9 = rng.integers(0, 5, size=2)
        places = rng.choice(LENGTH, k7 + k9, replace=False)
        x[i, places[:k7]], x[i, places[k7:]] = 7, 9
    y = (np.sum(x == 7, 1) > np.sum(x == 9, 1)).astype("int64")
    return x.astype("int32"), y


def transformer():
    inputs = keras.Input((LENGTH,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 32)(inputs)
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(h, h)
    h = keras.layers.LayerNormalization()(h + attention)
    h = keras.layers.Dense(64, activation="relu", name="ffn")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="output")(h), name="transformer_block")


def lstm():
    inputs = keras.Input((LENGTH,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 32)(inputs)
    h = keras.layers.LSTM(32, name="lstm")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="output")(h), name="lstm_text")


train, val, test = text_data(4000), text_data(1000), text_data(1000)
for build in (transformer, lstm):
    keras.utils.set_random_seed(0)
    model = tfl.wrap(build())
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    records = tfl.imp.run_rounds(
        model, train, validation_data=val, test_data=test, rounds=3,
        experiment_dir=f"{OUTPUT}/{model.name}",
        training_config=tfl.TrainingConfig(train_steps=600, batch_size=50, eval_every=100),
        pruning_config=tfl.PruningConfig(fraction=0.5))
    print(f"\n== {model.name}")
    print(tfl.results.format_table(records))
    for r in records:
        print(f"round {r['round']}: " + ", ".join(
            f"{k} {100 * v['remaining_fraction']:.1f}%" for k, v in r["layers"].items()))
    tfl.summary(model)
