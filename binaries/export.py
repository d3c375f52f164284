"""Exports one round of an IMP experiment as SavedModel, .keras and TFLite, each verified.

  python -m binaries.export --experiment_dir=experiments/imp_lenet_mnist_init_1234abcd \
      --round=best --export_dir=exports/lenet_best --shrink

The checks (tf_lottery.export.prepare) run before TensorFlow is imported; the
binary prints a text summary of the report that tf_lottery.export.run returns.
"""

from absl import app
from absl import flags

from binaries import cli
from tf_lottery import export

flags.DEFINE_string("experiment_dir", None, "A folder written by binaries.lottery.")
flags.DEFINE_string("round", "best",
                    "Round to export, or 'best': the sparsest finished round whose early-stop test "
                    "accuracy is within --tolerance percentage points of round 0's.")
flags.DEFINE_string("export_dir", None,
                    "Folder to write; it must not exist or be empty unless --overwrite.")
flags.DEFINE_list("format", list(export.FORMATS),
                  "Formats to write: saved_model, keras, tflite (float and int8).")
flags.DEFINE_bool("shrink", False,
                  "Export a physically smaller network without the pruned neurons and filters.")
flags.DEFINE_bool("sparse", False,
                  "Also write sparse-encoded TFLite files (float32, float16, int8), the compressed ticket "
                  "(ticket.npz, ticket_int8.npz) and model_fast.tflite, the fastest CPU path measured here; "
                  "see docs/export.md.")
flags.DEFINE_integer("sparse_batch", 1, "The batch size at which --sparse measures the fastest path.")
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --export_dir.")
flags.DEFINE_float("tolerance", 0.5, "Accuracy drop from round 0, in percentage points, for --round=best.")
flags.DEFINE_string("data_dir", None, "Where the data is now, if not where config.json says.")
FLAGS = flags.FLAGS


def format_report(report):
    """A plain-text summary: the round, the sparsity, and one line per exported format."""
    overall = report["overall"]
    lines = [f"round {report['round']} of {report['source']}: {100 * report['remaining_fraction']:.2f}% "
             f"of prunable weights remain, early-stop test accuracy {report['early_stop_test_accuracy']:.4f}",
             f"kernels: {overall['nonzeros']:,} nonzero of {overall['size']:,} "
             f"(sparsity {100 * overall['sparsity']:.2f}%), {overall['parameters']:,} parameters"]
    if report.get("shrink"):
        shrunk = report["shrink"]
        units = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in shrunk["units"].items())
        lines.append(f"shrunk: {shrunk['parameters_before']:,} -> {shrunk['parameters_after']:,} "
                     f"parameters; units kept: {units}")
    lines.append(f"{'format':<14} {'max abs diff':>12} {'agreement':>10} {'test acc':>9} {'bytes':>12}")
    for name, result in report["formats"].items():
        lines.append(f"{name:<14} {result['max_abs_diff']:>12.2e} {result['argmax_agreement']:>10.4f} "
                     f"{result['test_accuracy']:>9.4f} {result['bytes']:>12,}")
    if report.get("sparse"):
        lines.extend(_sparse_lines(report))
    return "\n".join(lines)


def _sparse_lines(report):
    """The sizes against the dense float32 TFLite file and the fast path, layer by layer."""
    sparse, formats = report["sparse"], report["formats"]
    sizes = ", ".join(f"{name} {formats[name]['x_smaller_than_dense_tflite']:.1f}x"
                      for name in formats if "x_smaller_than_dense_tflite" in formats[name])
    fast = sparse["fast_path"]
    lines = [f"smaller than the dense float32 TFLite file ({sparse['dense_tflite_bytes']:,} bytes): {sizes}",
             f"model_fast.tflite: {fast['chosen']}, {fast['speedup_vs_dense']:.2f}x dense; {fast['why']}"]
    lines += [f"  {key}: {layer['path']}: {layer['reason']}" for key, layer in fast["layers"].items()]
    return lines


def main(argv):
    cli.no_arguments(argv)
    with cli.usage_errors():
        job = export.prepare(FLAGS.experiment_dir, FLAGS.export_dir, round=FLAGS.round,
                             formats=FLAGS.format, shrink=FLAGS.shrink, overwrite=FLAGS.overwrite,
                             tolerance=FLAGS.tolerance, data_dir=FLAGS.data_dir, sparse=FLAGS.sparse,
                             sparse_batch=FLAGS.sparse_batch)
    try:
        report = cli.execute(export.run, job)
    except export.ExportError as error:
        cli.fail(str(error), status=1)
    print(format_report(report))
    print(f"exported: {job.export_dir}")


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
