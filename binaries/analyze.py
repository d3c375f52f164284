"""Analyses of IMP results folders; the first argument names the command.

  python -m binaries.analyze plots --experiment_dir=DIR [--experiment_dir=DIR2 ...]
  python -m binaries.analyze lmc --experiment_dir=DIR --round=4 [--data_seeds=1,2] [--points=30]
  python -m binaries.analyze rewind_search --experiment_dir=DIR --round=4 --candidates=0,100,500,1000
  python -m binaries.analyze overlap --mask_a=A/mask.npz --mask_b=B/mask.npz
  python -m binaries.analyze overlap --experiment_dir=DIR --experiment_dir=DIR2 --round=4
  python -m binaries.analyze study --study_dir=DIR [--claims=lth_lenet]
  python -m binaries.analyze taxonomy --experiment_dir=DIR [--experiment_dir=DIR2 ...] [--sizes=21.1,5.5,1.4]
  python -m binaries.analyze stability --experiment_dir=DIR --round=4 --rewind_steps=0,100,500,2000
      [--controls=random_prune] [--train_steps=10000]
  python -m binaries.analyze stability_report --experiment_dir=SEED0 --experiment_dir=SEED1 ...

plots writes figures (PNG and SVG) into DIR/plots/, DIR/report.md and the
TensorBoard runs in DIR/tb/ of each folder; several folders are replicates
(means and min-max bands). lmc and rewind_search write JSON into DIR/analysis/.
study writes DIR/report.md and DIR/plots/ of a study folder (binaries.study):
its points grouped by the grid's axes, statistics across seeds (the seed the
unit, paired t intervals of differences, Holm's marks per table), and with
--claims a paper's claims beside ours with verdicts by the rule of each
claim's kind. taxonomy writes DIR/analysis/taxonomy.md and
DIR/plots/taxonomy_accuracy.png: every IMP branch and control of the
folders at a few sizes, with the iterations and seconds finding each ticket
cost. stability trains, from the dense network's weights at each rewind point,
the full network and round R's subnetwork (IMP's mask, and random_prune's with
the same per-tensor counts) and reports stability to pruning, to data order,
the instability and the rewind point each criterion picks (every training
resumable under DIR/analysis/stability/); stability_report puts the records of
several seeds' folders into one table with the claims' verdicts.

This binary parses its flags and checks them (tf_lottery.analyze_checks,
before TensorFlow is imported; a flag that the command does not read is
refused), and formats the results as text; the work is
in tf_lottery.analysis (arithmetic), tf_lottery.connectivity (training),
tf_lottery.report (figures and report) and tf_lottery.study.report (studies).
"""

from absl import app
from absl import flags

from binaries import cli
from tf_lottery import connectivity
from tf_lottery import experiment
from tf_lottery import report
from tf_lottery import stability
from tf_lottery import taxonomy
from tf_lottery.analyze_checks import (COMMAND_FLAGS, check_command_flags, experiment_folders, lmc_options,
                                       mask_overlap, overlap_masks, plotted_rounds, rewind_options,
                                       taxonomy_sizes)
from tf_lottery.results import analyses
from tf_lottery.settings import ConfigError
from tf_lottery.study import claims as claims_lib
from tf_lottery.study import folder
from tf_lottery.study import report as study_report
from tf_lottery.study import stability as stability_study

flags.DEFINE_multi_string("experiment_dir", [], "A folder written by binaries.lottery; repeat the flag "
                          "for replicates (plots) or for two experiments (overlap).")
flags.DEFINE_string("data_dir", None,
                    "Where the data is now, if not where config.json says (lmc, rewind_search).")
flags.DEFINE_list("rounds_to_plot", [], "Rounds whose training curves and first-layer maps are drawn "
                  "(default: up to 4 spread over the run).")
flags.DEFINE_integer("round", None, "The round whose mask is studied (lmc, rewind_search, overlap).")
flags.DEFINE_integer("round_b", None, "overlap: the round of the second mask (default: --round).")
flags.DEFINE_list("data_seeds", ["1", "2"],
                  "The data orders of the two trained copies (lmc, rewind_search).")
flags.DEFINE_alias("data_seed", "data_seeds")  # the old spelling
flags.DEFINE_integer("points", 30,
                     "Points evaluated on the line between the two copies, end points included.")
flags.DEFINE_list("candidates", ["0", "100", "500", "1000", "2000"],
                  "rewind_search: iterations of round 0 to rewind to.")
flags.DEFINE_float("threshold", 0.02, "rewind_search: instability below which a rewind point is stable.")
flags.DEFINE_string("mask_a", None, "overlap: an .npz mask file (e.g. round_04/mask.npz).")
flags.DEFINE_string("mask_b", None, "overlap: the .npz mask file to compare with --mask_a.")
flags.DEFINE_string("study_dir", None, "study: a study folder written by binaries.study.")
flags.DEFINE_list("sizes", ["21.1", "5.5", "1.4"], "taxonomy: % of the weights remaining to compare "
                  "the methods at.")
flags.DEFINE_string("claims", None, "study: a paper's claims to check against each group of the study "
                    "(lth_lenet: Frankle & Carbin's LeNet-300-100 claims).")
flags.DEFINE_list("rewind_steps", ["0", "100", "500", "2000"],
                  "stability: iterations of round 0 whose weights the trainings start from.")
flags.DEFINE_list("controls", [], "stability: masks to compare with IMP's: random_prune (a random mask with "
                  "IMP's per-tensor counts) or a further draw of it, random_prune.2.")
flags.DEFINE_integer("train_steps", None, "stability: iterations of every training (default: the "
                     "experiment's train_steps).")
flags.DEFINE_integer("checkpoint_every", None, "stability: iterations between the checkpoints of a "
                     "training (default: the experiment's); a killed training continues from the last one.")
flags.DEFINE_float("accuracy_tolerance", 0.003, "stability: the accuracy pick is the earliest rewind point "
                   "within this much test accuracy (0.003: 0.3 points) of the best one.")
flags.DEFINE_float("distance_tolerance", 0.1, "stability: a distance's pick is the earliest rewind point "
                   "whose distance is at most the smallest one's times 1 + this (its plateau).")
FLAGS = flags.FLAGS

# Text output.

def format_overlap(overlap, name_a="a", name_b="b"):
    """A plain-text table of analysis.mask_overlap()."""
    lines = [f"mask a: {name_a}", f"mask b: {name_b}",
             f"{'weight':<28} {'ones a':>10} {'ones b':>10} {'shared':>10} {'jaccard':>8} {'chance':>8}"]
    rows = list(overlap["layers"].items()) + [("overall", overlap["overall"])]
    for key, o in rows:
        lines.append(f"{key:<28} {o['ones_a']:>10,} {o['ones_b']:>10,} {o['intersection']:>10,} "
                     f"{o['jaccard']:>8.4f} {o['chance']:>8.4f}")
    return "\n".join(lines)


def format_lmc(record):
    """A plain-text report of one connectivity.lmc() record: the path, the instability and the distances."""
    lines = [f"round {record['round']} ({100 * record['remaining_fraction']:.2f}% remaining), "
             f"trained from {record['start']} with data seeds {record['data_seeds'][0]} and "
             f"{record['data_seeds'][1]}, {len(record['path'])} points",
             f"{'alpha':>7}  {'test error':>10}"]
    lines += [f"{p['alpha']:>7.3f}  {p['error']:>10.4f}" for p in record["path"]]
    lines += [f"instability (max error on the path - mean end-point error): {record['instability']:.4f}",
              f"end-point errors: {record['end_errors'][0]:.4f}, {record['end_errors'][1]:.4f}; "
              f"max error: {record['max_error']:.4f}",
              f"L2 distance: {record['l2_distance']:.4f} "
              f"(relative to the mean weight norm: {record['relative_distance']:.4f})"]
    return "\n".join(lines)


def format_rewind_search(search):
    """A plain-text table of a connectivity.rewind_search() result, its verdict and the IMP command."""
    lines = [f"round {search['round']} mask ({100 * search['remaining_fraction']:.2f}% remaining), "
             f"data seeds {search['data_seeds'][0]} and {search['data_seeds'][1]}, "
             f"{search['points']} points, threshold {search['threshold']}",
             f"{'rewind it':>9}  {'test acc':>8}  {'instability':>11}  {'error A':>8}  {'error B':>8}  "
             f"{'max error':>9}  {'L2 dist':>8}  {'rel dist':>8}"]
    for row in search["candidates"]:
        lines.append(f"{row['iteration']:>9}  {row['test_accuracy']:>8.4f}  {row['instability']:>11.4f}  "
                     f"{row['end_errors'][0]:>8.4f}  {row['end_errors'][1]:>8.4f}  "
                     f"{row['max_error']:>9.4f}  "
                     f"{row['l2_distance']:>8.3f}  {row['relative_distance']:>8.4f}")
    lines.append(f"highest test accuracy at early stop (mean of the copies): iteration "
                 f"{search['picks']['accuracy']}")
    k = search["earliest_stable"]
    if k is None:
        lines.append(f"no candidate is stable (instability < {search['threshold']}); "
                     "try later rewind points")
    else:
        lines.append(f"earliest stable rewind point (instability < {search['threshold']}): "
                     f"iteration {k}")
        lines.append(f"run IMP with it: {search['command']}" if search["command"] else
                     "the experiment already resets to theta_0, which is stable: no rewinding needed")
    return "\n".join(lines)


def format_stability(record):
    """A plain-text table per mask of a stability.run() record, its picks and whether they agree."""
    lines = [f"round {record['round']} ({100 * record['remaining_fraction']:.2f}% remaining), from theta_k "
             f"of round 0, data seeds {record['data_seeds'][0]} and {record['data_seeds'][1]}, "
             f"{record['train_steps']:,} iterations per training, {record['points']} points",
             "distances over the positions the mask keeps: pruning = ||m*(sub A - full A)||, relative to "
             "||m*full A||; data order = ||m*(sub A - sub B)||, relative to the mean of ||m*sub A||, ||m*sub B||",
             f"picks: instability = earliest k with instability < {record['threshold']}; accuracy = earliest k "
             f"within {100 * record['accuracy_tolerance']:.2f} points of the best; pruning, data_order = "
             f"earliest k with relative distance <= {1 + record['distance_tolerance']:g} x the smallest"]
    dense = {row["iteration"]: row for row in record["dense"]}
    for name, mask in record["masks"].items():
        lines += ["", f"{name}:", f"{'rewind it':>9}  {'test acc':>8}  {'full acc':>8}  {'prune L2':>9}  "
                  f"{'prune rel':>9}  {'order L2':>9}  {'order rel':>9}  {'instability':>11}"]
        for row in mask["rows"]:
            lines.append(f"{row['iteration']:>9}  {row['test_accuracy']:>8.4f}  "
                         f"{dense[row['iteration']]['early_stop_test_accuracy']:>8.4f}  "
                         f"{row['pruning_l2_distance']:>9.3f}  {row['pruning_relative_distance']:>9.4f}  "
                         f"{row['data_order_l2_distance']:>9.3f}  {row['data_order_relative_distance']:>9.4f}  "
                         f"{row['instability']:>11.4f}")
        picks = ", ".join(f"{k} {'none' if v is None else v}" for k, v in mask["picks"].items())
        lines.append(f"picks: {picks}; {'they agree' if mask['agree'] else 'they disagree'}")
    return "\n".join(lines)


# Commands.

def _one_experiment():
    """The one --experiment_dir, loaded for training copies, and --round checked as a finished round."""
    if len(FLAGS.experiment_dir) != 1:
        raise ConfigError("experiment_dir", f"give exactly one folder, got {len(FLAGS.experiment_dir)}")
    prepared = experiment.load_experiment(FLAGS.experiment_dir[0], FLAGS.data_dir, retrainable=True)
    connectivity.check_round(prepared, FLAGS.round)
    return prepared


def plots():
    with cli.usage_errors():
        folders = experiment_folders(FLAGS.experiment_dir)
        rounds = plotted_rounds(folders, FLAGS.rounds_to_plot)
    path, written = cli.execute(report.make_report, FLAGS.experiment_dir, rounds)
    for plot in written:
        print(f"{plot.png}\n{plot.svg}")
    print(f"report: {path}")


def lmc():
    with cli.usage_errors():
        seeds = lmc_options(FLAGS.data_seeds, FLAGS.points)
        prepared = _one_experiment()
    record = cli.execute(connectivity.lmc, prepared, FLAGS.round, seeds, FLAGS.points)
    print(format_lmc(record))
    print(f"results: {analyses.lmc_path(prepared.directory, FLAGS.round)}")


def rewind_search():
    with cli.usage_errors():
        seeds = lmc_options(FLAGS.data_seeds, FLAGS.points)
        prepared = _one_experiment()
        candidates = rewind_options(prepared, FLAGS.candidates, FLAGS.threshold)
    search = cli.execute(connectivity.rewind_search, prepared, FLAGS.round, candidates, FLAGS.threshold,
                         seeds, FLAGS.points)
    print(format_rewind_search(search))
    print(f"results: {analyses.rewind_search_path(prepared.directory, FLAGS.round)}")


def overlap_command():
    with cli.usage_errors():
        masks = overlap_masks(FLAGS.mask_a, FLAGS.mask_b, FLAGS.experiment_dir, FLAGS.round, FLAGS.round_b)
    (path_a, a), (path_b, b) = masks
    result = cli.execute(mask_overlap, path_a, a, path_b, b)
    print(format_overlap(result, path_a, path_b))


def study():
    with cli.usage_errors():
        if not FLAGS.study_dir:
            raise ConfigError("study_dir", "is required")
        folder.read_study(FLAGS.study_dir)
        if FLAGS.claims is not None and FLAGS.claims not in claims_lib.CLAIM_SETS:
            raise ConfigError("claims", f"must be one of {', '.join(claims_lib.CLAIM_SETS.names())}, "
                                        f"got {FLAGS.claims!r}")
    path, written = cli.execute(study_report.make_report, FLAGS.study_dir, FLAGS.claims)
    for plot in written:
        print(f"{plot.png}\n{plot.svg}")
    print(f"report: {path}")


def taxonomy_command():
    with cli.usage_errors():
        experiment_folders(FLAGS.experiment_dir)
        sizes = taxonomy_sizes(FLAGS.sizes)
    path, plot = cli.execute(taxonomy.write, FLAGS.experiment_dir, sizes)
    print(path.read_text())
    print(f"{plot.png}\n{plot.svg}\ntable: {path}")


def stability_command():
    with cli.usage_errors():
        seeds = lmc_options(FLAGS.data_seeds, FLAGS.points)
        prepared = _one_experiment()
        plan = stability.plan(prepared, FLAGS.round, FLAGS.rewind_steps, FLAGS.controls, seeds, FLAGS.points,
                              FLAGS.train_steps, FLAGS.threshold, FLAGS.accuracy_tolerance,
                              FLAGS.distance_tolerance, FLAGS.checkpoint_every)
    record = cli.execute(stability.run, prepared, plan)
    print(format_stability(record))
    print(f"results: {analyses.stability_path(prepared.directory, FLAGS.round)}")


def stability_report_command():
    with cli.usage_errors():
        folders = experiment_folders(FLAGS.experiment_dir)
        stability_study.read(folders)
    path, text = cli.execute(stability_study.write_report, folders)
    print(text)
    print(f"report: {path}")


COMMANDS = {"plots": plots, "lmc": lmc, "rewind_search": rewind_search, "overlap": overlap_command,
            "study": study, "taxonomy": taxonomy_command, "stability": stability_command,
            "stability_report": stability_report_command}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        cli.fail(f"expected one command ({', '.join(COMMANDS)}), got {' '.join(argv[1:]) or 'none'}")
    with cli.usage_errors():
        check_command_flags(argv[1], [name for names in COMMAND_FLAGS.values() for name in names
                                      if FLAGS[name].present])
        if "" in FLAGS.experiment_dir:
            raise ConfigError("experiment_dir", "must not be empty")
    COMMANDS[argv[1]]()


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
