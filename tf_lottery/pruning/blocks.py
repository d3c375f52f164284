"""The block structure: tiles of the [fan_in, out] kernel view, scored by mean or max magnitude."""

import dataclasses
import math
from typing import ClassVar

from etils import epy

from tf_lottery.pruning import views
from tf_lottery.pruning.structures import BLOCK_POOLINGS, STRUCTURES, Structure

with epy.lazy_imports():
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils


@STRUCTURES.register("block")
@dataclasses.dataclass(frozen=True)
class Block(Structure):
    """Blocks of block_shape on a grid at (0, 0) of the [fan_in, out] view, by avg or max magnitude.

    A transposed convolution's kernel (..., out, in), named Transposed('block'),
    is viewed as [..., in, out] first, so its rows are still the fan-in.
    """
    block_shape: tuple = (1, 4)
    pooling: str = "avg"
    global_scope: ClassVar[bool] = True
    OPTION_FIELDS: ClassVar[dict] = {"block_shape": "block_shape", "block_pooling": "pooling"}

    def __post_init__(self):
        object.__setattr__(self, "block_shape", tuple(self.block_shape))
        if len(self.block_shape) != 2:
            raise ValueError(f"a block shape has two sizes, got {self.block_shape!r}")
        if self.pooling.lower() not in BLOCK_POOLINGS:
            raise ValueError(f"unknown block pooling {self.pooling!r}; "
                             f"choose one of {', '.join(BLOCK_POOLINGS)}")

    def _grid(self, rows, cols):
        return -(-rows // self.block_shape[0]), -(-cols // self.block_shape[1])

    def _pool(self, matrix, pooling):
        """Block scores on the grid; a partial edge block averages only its own weights."""
        rows, cols = matrix.shape
        grid = self._grid(rows, cols)
        padding = [[0, grid[0] * self.block_shape[0] - rows], [0, grid[1] * self.block_shape[1] - cols]]

        def pool(x, kind):
            return tf.reshape(pruning_utils.factorized_pool(
                tf.pad(x, padding), window_shape=self.block_shape, pooling_type=kind,
                strides=self.block_shape, padding="VALID"), grid)

        if pooling == "MAX":
            return pool(matrix, "MAX")
        return pool(matrix, "AVG") / pool(tf.ones_like(matrix), "AVG")

    def unit_scores(self, magnitude):
        return tf.reshape(self._pool(views.matrix(magnitude), self.pooling.upper()), [-1])

    def unit_alive(self, mask):
        return tf.reshape(self._pool(views.matrix(mask), "MAX"), [-1])

    def spread(self, unit_mask, shape):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        grid = tf.reshape(unit_mask, self._grid(rows, cols))
        return tf.reshape(pruning_utils.expand_tensor(grid, self.block_shape)[:rows, :cols], shape)
