"""Export a round's pruned network as SavedModel, .keras and TFLite, each reloaded and verified.

`export(experiment_dir, export_dir, round="best")` writes into export_dir:

  saved_model/          tf.saved_model, 'serve' signature (inputs named after the model's
                        input layers, output 'output_0'); loads with plain TensorFlow
  model.keras           the same network as a Keras 3 file (standard layers only)
  model_float.tflite    TFLite, float32
  model_int8.tflite     TFLite with dynamic-range int8 weights (tf.lite.Optimize.DEFAULT)
  export_report.json    source round, sparsity per kernel, and per format: difference to
                        the round's model, test accuracy, file size
  (with sparse=True)    model_sparse*.tflite, ticket*.npz, model_fast.tflite: see sparse.py

The network has no wrapper, mask or snapshot: kernels are weight * mask
(`model_ops.strip`), optionally shrunk (`shrink.shrink`). Every file is read
back and checked on the experiment's whole test split (outputs, and the zero
pattern of every kernel against its mask) before the folder appears: it is
written beside export_dir and renamed into place, or removed on failure.

  request.py      `prepare`: the checks that need no TensorFlow (formats, tolerance,
                  export folder, round choice) -> a Job
  runner.py       `run(job)`: restore, strip, shrink, write and verify each format
  tflite.py       TFLite conversion, running and kernel introspection
  transaction.py  the staged folder renamed into place
  sparse.py       --sparse: the files below, written and checked, and the report's "sparse" section
  sparse_tflite.py  sparse-encoded float32/float16/int8 TFLite files; kernels read back (CSR decoded)
  compressed.py   the compressed ticket file (save_ticket, load_ticket, read_ticket)
  fast_path.py    the fastest CPU path, layer by layer by measurement (shrink, CSR FULLY_CONNECTED)
  timing.py       interleaved latency of TFLite interpreters (medians)

Importing this package does not import TensorFlow; `run` does.
"""

from etils import epy

from tf_lottery.export.request import (  # noqa: F401 (the public API)
    FORMATS, REPORT, ExportError, Job, prepare, select_round)

with epy.lazy_imports():
    from tf_lottery.export import runner


def run(job):
    """Restores the job's round, strips (and shrinks) it, writes and checks each format; returns the report."""
    return runner.run(job)


def export(experiment_dir, export_dir, round="best", formats=FORMATS, shrink=False, overwrite=False,
           tolerance=0.5, data_dir=None, sparse=False, sparse_batch=1):
    """Exports and verifies one round of an experiment folder; returns the report dict.

    With `sparse`, also the sparse-encoded TFLite files, the compressed ticket
    files and the fastest CPU path measured at `sparse_batch` (sparse.py).
    Raises ConfigError or DataError for bad input, ExportError when an exported
    file fails its check; in both cases export_dir is left as it was.
    """
    return run(prepare(experiment_dir, export_dir, round=round, formats=formats, shrink=shrink,
                       overwrite=overwrite, tolerance=tolerance, data_dir=data_dir, sparse=sparse,
                       sparse_batch=sparse_batch))
