"""Analyses of IMP results folders; the first argument names the command.

  python -m binaries.analyze plots --experiment_dir=DIR [--experiment_dir=DIR2 ...]
  python -m binaries.analyze lmc --experiment_dir=DIR --round=4 [--data_seed=1,2] [--points=30]
  python -m binaries.analyze rewind_search --experiment_dir=DIR --round=4 --candidates=0,100,500,1000
  python -m binaries.analyze overlap --mask_a=A/mask.npz --mask_b=B/mask.npz
  python -m binaries.analyze overlap --experiment_dir=DIR --experiment_dir=DIR2 --round=4

plots writes figures (PNG and SVG) into DIR/plots/, DIR/report.md and the
TensorBoard runs in DIR/tb/ of each folder; several folders are replicates
(means and min-max bands). lmc and rewind_search write JSON into DIR/analysis/.
"""

from absl import app
from absl import flags

from binaries import cli
from tf_lottery import analysis
from tf_lottery import experiment
from tf_lottery import report

flags.DEFINE_multi_string("experiment_dir", [], "A folder written by binaries.lottery; repeat the flag "
                          "for replicates (plots) or for two experiments (overlap).")
flags.DEFINE_string("data_dir", None,
                    "Where the data is now, if not where config.json says (lmc, rewind_search).")
flags.DEFINE_list("rounds_to_plot", [], "Rounds whose training curves and first-layer maps are drawn "
                  "(default: up to 4 spread over the run).")
flags.DEFINE_integer("round", None, "The round whose mask is studied (lmc, rewind_search, overlap).")
flags.DEFINE_integer("round_b", None, "overlap: the round of the second mask (default: --round).")
flags.DEFINE_list("data_seed", ["1", "2"],
                  "The data orders of the two trained copies (lmc, rewind_search).")
flags.DEFINE_integer("points", 30,
                     "Points evaluated on the line between the two copies, end points included.")
flags.DEFINE_list("candidates", ["0", "100", "500", "1000", "2000"],
                  "rewind_search: iterations of round 0 to rewind to.")
flags.DEFINE_float("threshold", 0.02, "rewind_search: instability below which a rewind point is stable.")
flags.DEFINE_string("mask_a", None, "overlap: an .npz mask file (e.g. round_04/mask.npz).")
flags.DEFINE_string("mask_b", None, "overlap: the .npz mask file to compare with --mask_a.")
FLAGS = flags.FLAGS


def _one_experiment():
    if len(FLAGS.experiment_dir) != 1:
        cli.fail(f"--experiment_dir: give exactly one folder, got {len(FLAGS.experiment_dir)}")
    return experiment.load_experiment(FLAGS.experiment_dir[0], FLAGS.data_dir)


def plots():
    with cli.usage_errors():
        rounds = (analysis.int_list(FLAGS.rounds_to_plot, "rounds_to_plot")
                  if FLAGS.rounds_to_plot else None)
    path, written = cli.execute(report.make_report, FLAGS.experiment_dir, rounds)
    for plot in written:
        print(f"{plot.png}\n{plot.svg}")
    print(f"report: {path}")


def lmc():
    with cli.usage_errors():
        seeds = analysis.lmc_options(FLAGS.data_seed, FLAGS.points)
        prepared = _one_experiment()
    record = cli.execute(analysis.lmc, prepared, FLAGS.round, seeds, FLAGS.points)
    print(analysis.format_lmc(record))
    print(f"results: {analysis.lmc_path(prepared.directory, FLAGS.round)}")


def rewind_search():
    with cli.usage_errors():
        seeds = analysis.lmc_options(FLAGS.data_seed, FLAGS.points)
        candidates = analysis.int_list(FLAGS.candidates, "candidates")
        prepared = _one_experiment()
    search = cli.execute(analysis.rewind_search, prepared, FLAGS.round, candidates, FLAGS.threshold,
                         seeds, FLAGS.points)
    print(analysis.format_rewind_search(search))
    print(f"results: {analysis.rewind_search_path(prepared.directory, FLAGS.round)}")


def overlap():
    path_a, path_b, result = cli.execute(analysis.overlap, FLAGS.mask_a, FLAGS.mask_b,
                                         FLAGS.experiment_dir, FLAGS.round, FLAGS.round_b)
    print(analysis.format_overlap(result, path_a, path_b))


COMMANDS = {"plots": plots, "lmc": lmc, "rewind_search": rewind_search, "overlap": overlap}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        cli.fail(f"expected one command ({', '.join(COMMANDS)}), got {' '.join(argv[1:]) or 'none'}")
    COMMANDS[argv[1]]()


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
