"""What `import tf_lottery` sets up: the wrapper registered with Keras, TensorFlow's start-up log hidden."""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LOG_LINE = re.compile(r"^[IWE]0000 ", re.MULTILINE)


def _python(code, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300)


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


def test_import_alone_registers_the_wrapper_for_load_model(tmp_path):
    path = tmp_path / "wrapped.keras"
    _ok(_python(f"""
        import keras, numpy as np
        import tf_lottery as tfl
        inputs = keras.Input((5,))
        model = tfl.wrap(keras.Model(inputs, keras.layers.Dense(3, name="fc")(inputs)))
        masks = tfl.get_masks(model)
        masks["fc/kernel"][::2] = 0
        tfl.set_masks(model, masks)
        model.save({str(path)!r})
        np.save({str(tmp_path / 'out.npy')!r}, model(np.ones((2, 5), "float32")).numpy())
    """))
    for first in ("tf_lottery", "keras"):  # either import order
        result = _ok(_python(f"""
            import sys
            import {first}
            import tf_lottery, keras
            import numpy as np
            model = keras.models.load_model({str(path)!r})
            assert type(model.get_layer("fc")).__name__ == "LotteryWrapper"
            expected = np.load({str(tmp_path / 'out.npy')!r})
            np.testing.assert_array_equal(model(np.ones((2, 5), "float32")).numpy(), expected)
            print("loaded")
        """))
        assert result.stdout.strip() == "loaded"


@pytest.mark.parametrize("module,wrapper", [("edge_popup", "EdgePopupWrapper"),
                                             ("supermask", "SupermaskWrapper")])
def test_import_alone_registers_the_learned_mask_wrappers_for_load_model(tmp_path, module, wrapper):
    path = tmp_path / "learned.keras"
    _ok(_python(f"""
        import keras, numpy as np
        from tf_lottery import {module}
        inputs = keras.Input((5,))
        model = {module}.wrap(keras.Model(inputs, keras.layers.Dense(3, name="fc")(inputs)))
        model(np.ones((2, 5), "float32"), training=False)
        model.save({str(path)!r})
        np.save({str(tmp_path / 'out.npy')!r}, model(np.ones((2, 5), "float32"), training=False).numpy())
    """))
    result = _ok(_python(f"""
        import tf_lottery, keras
        import numpy as np
        model = keras.models.load_model({str(path)!r})
        assert type(model.get_layer("fc")).__name__ == "{wrapper}", type(model.get_layer("fc"))
        expected = np.load({str(tmp_path / 'out.npy')!r})
        np.testing.assert_array_equal(model(np.ones((2, 5), "float32"), training=False).numpy(), expected)
        print("loaded")
    """))
    assert result.stdout.strip() == "loaded"


def test_import_alone_registers_the_learning_rate_schedule_for_load_model(tmp_path):
    path = tmp_path / "compiled.keras"
    _ok(_python(f"""
        import keras
        from tf_lottery import training
        inputs = keras.Input((5,))
        model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(inputs))
        schedule = training.WarmupPiecewise(0.1, warmup_steps=10, milestones=(20,), gamma=0.5)
        model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
        model.save({str(path)!r})
    """))
    result = _ok(_python(f"""
        import tf_lottery, keras
        model = keras.models.load_model({str(path)!r})
        schedule = model.optimizer._learning_rate
        print(type(schedule).__name__, [round(float(schedule(s)), 4) for s in (0, 9, 15, 25)])
    """))
    assert result.stdout.split("\n")[0] == "WarmupPiecewise [0.01, 0.1, 0.1, 0.05]"


def test_import_alone_leaves_tensorflow_and_keras_unloaded():
    result = _ok(_python("""
        import sys
        import tf_lottery, tf_lottery.config
        print("tensorflow" in sys.modules, "keras" in sys.modules)
    """))
    assert result.stdout.split() == ["False", "False"]


def _lottery_model_summary(*python_args):
    result = subprocess.run(
        [sys.executable, *python_args, "--model_summary", "--dataset=mnist_small"], cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "fc1/kernel" in result.stdout
    return result.stderr


def test_tensorflow_start_up_lines_are_hidden():
    stderr = _lottery_model_summary("-c", "import sys, runpy, tf_lottery; sys.argv[0] = 'lottery'; "
                                          "runpy.run_module('binaries.lottery', run_name='__main__')")
    assert not LOG_LINE.search(stderr), stderr
    assert "absl::InitializeLog" not in stderr


def test_lottery_binary_prints_no_tensorflow_log_line():
    stderr = _lottery_model_summary("-m", "binaries.lottery")
    assert not LOG_LINE.search(stderr), stderr


def test_a_level_set_by_the_user_is_kept():
    result = _ok(_python("""
        import os
        import tf_lottery
        import tensorflow as tf
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    """, env={"TF_CPP_MIN_LOG_LEVEL": "0"}))
    assert result.stdout.strip() == "0"
    assert LOG_LINE.search(result.stderr)  # TensorFlow's own lines are the user's choice
    default = _ok(_python("""
        import os
        import tf_lottery
        import tensorflow as tf
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
        tf.constant(1.0) + 1
    """))
    assert default.stdout.strip() == "3"
    assert not LOG_LINE.search(default.stderr), default.stderr
