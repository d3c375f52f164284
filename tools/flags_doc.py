"""Writes docs/flags.md, the flag reference, from the settings' declarations (python tools/flags_doc.py)."""

import pathlib

from tf_lottery import bounds
from tf_lottery import flags

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "flags.md"

HEADER = """# Flags of binaries.lottery and binaries.train

Generated from the declarations in `tf_lottery/config.py` by `python tools/flags_doc.py`; a test
checks that this file is current. Every flag is also a field of a settings group
(`ExperimentConfig.<group>.<field>`) and a key of `config.json`. "changes results" says whether the
value enters the folder hash and the check that refuses a changed config in an existing folder.
Choices come from the registries, so a registered model, dataset, structure, criterion, scope,
schedule or control is listed here and accepted by the flag.

"""


BOUNDS = f"""
## Bounds

Besides each flag's own range above, every value is checked against what the code does with it,
before anything trains or is written; a value out of bounds is one line naming the flag, exit
status 2 (`tf_lottery/bounds.py`):

- Floats must be finite, and text flags not empty (leave a flag out for its default).
- `--seed` and `--data_seed` are at most {bounds.MAX_SEED:,} (NumPy's legacy generator, which
  `keras.utils.set_random_seed` seeds, takes no more), and so are the seeds of `--replicates`
  (at most {bounds.MAX_REPLICATES:,}).
- Iteration counts (`--train_steps`, also from epochs, `--eval_every`, `--checkpoint_every`,
  `--steps_per_call`, the gmp, early_bird, synflow and saliency counts) are at most
  {bounds.MAX_ITERATIONS:,} (2**24): the learning-rate schedule compares steps in float32, exact up to there.
- Sizes (`--batch_size`, `--eval_batch_size`, `--hidden` widths, `--block_shape`, `--n_of_m`) fit
  TensorFlow's int32 sizes ({bounds.MAX_SIZE:,}); `--width` is at most {bounds.MAX_WIDTH:g}.
- `--rounds` is at most {bounds.MAX_ROUNDS:,} (the controls' seeds keep the round in 12 bits) and at most
  the last round in which the geometric schedule still removes a weight while every kernel keeps one:
  worked out from the pruning rates for kernels of up to {bounds.LARGEST_TENSOR:,} weights, from
  LeNet's own kernels once the data is read, and from any model's once it is built.
- Once the data is read: `--batch_size` at most the training examples, `--validation_size` leaving at
  least a batch, `--train_size` between the two; LeNet's weights within this machine's memory at
  {bounds.BYTES_PER_WEIGHT} bytes each in training, `--exclude` naming its layers, and a
  `--block_shape` no longer in a side than every kernel (checked for any model once it is built).
- `--data_dir` does not apply to `mnist_small` (bundled), `--tpu` only to `--strategy=tpu`, and
  `--image_max_bytes`, `--image_max_ratio`, `--image_max_pixels` only to datasets of image files
  (see [datasets.md](datasets.md)); `--image_size` squared must fit `--image_max_pixels`.
- `--root_dir` and `--experiment_dir` must be (or be made as) a folder this process can write: not a
  file, nor a path under one.
"""


def text():
    return HEADER + flags.markdown_table() + "\n" + BOUNDS


if __name__ == "__main__":
    DOC.write_text(text())
    print(f"wrote {DOC}")
