"""report.md for results folders: setup, per-round tables, figures, TensorBoard runs and analyses.

`make_report` is the `analyze.py plots` command. Files are found through
`tf_lottery.results`; TensorFlow is imported (by tf_lottery.tensorboard) only
once the folders have been checked and the figures drawn.
"""

import os
import pathlib

from etils import epy

from tf_lottery import plots as plots_lib
from tf_lottery import results
from tf_lottery.results import analyses

with epy.lazy_imports():
    from tf_lottery import tensorboard

NO_TEST = ("The runs recorded no test accuracy (they had no test data): the figures and tables show "
           "validation accuracy instead.")


def _accuracy(value):
    return "n/a" if value is None else f"{value:.4f}"


def markdown_table(records, split="test"):
    """The per-round table of results.format_table, as Markdown (split 'val': validation accuracy)."""
    lines = [f"| round | remaining % | early-stop it | {split} acc @es | final {split} acc | seconds |",
             "|" + "---:|" * 6]
    for rec in records:
        head = f"| {rec['round']} | {100 * rec['remaining_fraction']:.2f} |"
        if rec.get("failed"):
            lines.append(f"{head} failed: {rec.get('error', '')} | | | |")
            continue
        lines.append(f"{head} {rec['early_stop_iteration']} | {_accuracy(rec[f'early_stop_{split}_accuracy'])} | "
                     f"{_accuracy(rec[f'final_{split}_accuracy'])} | {rec['wall_seconds']:.1f} |")
    return "\n".join(lines)


def replicate_table(runs, control=None, split="test"):
    """Mean and min-max over replicates of the early-stop and final test (or validation) accuracy per round."""
    early = plots_lib.aggregate(runs, f"early_stop_{split}_accuracy", control)
    final = {row[0]: row for row in plots_lib.aggregate(runs, f"final_{split}_accuracy", control)}
    iteration = {row[0]: row for row in plots_lib.aggregate(runs, "early_stop_iteration", control)}
    lines = [f"| round | remaining % | {split} acc @es: mean (min-max) | early-stop it: mean | "
             f"final {split} acc: mean (min-max) |", "|" + "---:|" * 5]
    for r, remaining, mean, low, high in early:
        _, _, f_mean, f_low, f_high = final[r]
        lines.append(f"| {r} | {remaining:.2f} | {mean:.4f} ({low:.4f}-{high:.4f}) | "
                     f"{iteration[r][2]:.0f} | {f_mean:.4f} ({f_low:.4f}-{f_high:.4f}) |")
    return "\n".join(lines)


def paired_table(runs, control, split="test"):
    """IMP's rounds beside a control's on the same masks: early-stop iteration, test (or validation)
    accuracy at early stop and at the end; mean (min-max) over the runs when there are several."""
    fields = ("early_stop_iteration", f"early_stop_{split}_accuracy", f"final_{split}_accuracy")

    def cells(name):
        rows = {field: {row[0]: row for row in plots_lib.aggregate(runs, field, name)} for field in fields}
        return rows, set(rows[fields[0]])

    def cell(row, field):
        _, _, mean, low, high = row
        if field == "early_stop_iteration":
            return f"{mean:.0f}" if low == high else f"{mean:.0f} ({low:.0f}-{high:.0f})"
        return f"{mean:.4f}" if low == high else f"{mean:.4f} ({low:.4f}-{high:.4f})"

    (imp, imp_rounds), (other, other_rounds) = cells(None), cells(control)
    headers = ["early-stop it", f"{split} acc @es", f"final {split} acc"]
    lines = ["| round | remaining % | " + " | ".join(f"IMP {h}" for h in headers) + " | "
             + " | ".join(f"{control} {h}" for h in headers) + " |", "|" + "---:|" * 8]
    for r in sorted(imp_rounds | other_rounds):
        remaining = (imp if r in imp_rounds else other)[fields[0]][r][1]
        row = [f"{r}", f"{remaining:.2f}"]
        for rows, present in ((imp, imp_rounds), (other, other_rounds)):
            row += [cell(rows[f][r], f) if r in present else "" for f in fields]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def layer_table(records):
    """Remaining % of each pruned tensor per round."""
    keys = list(records[0].get("layers", {}))
    lines = ["| round | " + " | ".join(keys) + " | all |", "|" + "---:|" * (len(keys) + 2)]
    for rec in records:
        cells = [f"{100 * rec['layers'][k]['remaining_fraction']:.2f}" for k in keys]
        lines.append(f"| {rec['round']} | " + " | ".join(cells)
                     + f" | {100 * rec['remaining_fraction']:.2f} |")
    return "\n".join(lines)


def describe(config):
    """One sentence with the experiment's setup."""
    k = config.get("rewind_step")
    reset = {"init": "reset to theta_0", "rewind": f"rewound to iteration {k}",
             "lr_rewind": f"kept trained, learning-rate schedule rewound to iteration {k}",
             "finetune": "kept trained, fine-tuned at the final learning rate"}.get(config.get("reset"),
                                                                                    config.get("reset"))
    output = config.get("output_prune_fraction")
    output = f", {100 * output:g}% of the output layer" if output is not None else ""
    conv = config.get("conv_prune_fraction")
    conv = f", {100 * conv:g}% of the convolutions" if conv is not None else ""
    structure = config.get("structure", "unstructured")
    units = "weights" if structure == "unstructured" else f"{structure} units"
    return (f"{plots_lib.model_name(config)} on {config.get('dataset')}, {config.get('rounds')} rounds "
            f"pruning {100 * config.get('prune_fraction', 0):g}% of the remaining {units} per round "
            f"({config.get('prune_scope')} scope{conv}{output}), survivors {reset}; "
            f"{config.get('train_steps')} iterations per round, {config.get('optimizer')} "
            f"(learning rate {config.get('learning_rate')}, batch {config.get('batch_size')})"
            + (f", seed {config['seed']}." if config.get("seed") is not None else "."))


def _link(path, base):
    return pathlib.Path(os.path.relpath(path, base)).as_posix()


def _analyses(directory, base):
    """Markdown summaries of the lmc and rewind_search results in directory/analysis/."""
    parts = []
    for path in analyses.lmc_paths(directory):
        rec = analyses.read(path)
        parts.append(f"- [{_link(path, base)}]({_link(path, base)}): round {rec['round']} "
                     f"({100 * rec['remaining_fraction']:.2f}% remaining) from {rec['start']}, "
                     f"data seeds {rec['data_seeds'][0]} and {rec['data_seeds'][1]}: instability "
                     f"{rec['instability']:.4f}, relative L2 distance {rec['relative_distance']:.4f}")
    for path in analyses.rewind_search_paths(directory):
        search = analyses.read(path)
        rows = ["| rewind it | test acc @es (mean of copies) | instability | max error | end errors | "
                "relative L2 distance |", "|" + "---:|" * 6]
        rows += [f"| {row['iteration']} | "
                 + (f"{row['test_accuracy']:.4f}" if "test_accuracy" in row else "")
                 + f" | {row['instability']:.4f} | {row['max_error']:.4f} | "
                 f"{row['end_errors'][0]:.4f}, {row['end_errors'][1]:.4f} | "
                 f"{row['relative_distance']:.4f} |"
                 for row in search["candidates"]]
        verdict = (f"earliest stable rewind point: iteration {search['earliest_stable']}"
                   if search["earliest_stable"] is not None else "no candidate is stable")
        if search.get("picks"):
            verdict += f"; the highest accuracy at iteration {search['picks']['accuracy']}"
        parts.append(f"Rewind-point search on round {search['round']}'s mask "
                     f"({100 * search['remaining_fraction']:.2f}% remaining; "
                     f"threshold {search['threshold']}, "
                     f"[{_link(path, base)}]({_link(path, base)})): {verdict}.\n\n" + "\n".join(rows))
    return parts


def write_report(directories, plots):
    """Writes `first directory/report.md` from the folders' results and the written Plot list."""
    base = pathlib.Path(directories[0])
    runs = plots_lib.load_runs(directories)
    controls, split = plots_lib.control_names(runs), plots_lib.accuracy_split(runs)
    lines = [f"# Lottery-ticket report: {base.resolve().name}", "", describe(runs[0].config), ""]
    if split != "test":
        lines += [NO_TEST, ""]
    if len(runs) > 1:
        names = ", ".join(f"`{_link(r.directory, base)}`" for r in runs)
        lines += [f"{len(runs)} runs: {names}.", "",
                  "## IMP rounds across runs", "", replicate_table(runs, split=split), ""]
        for name in controls:
            lines += [f"## Control across runs: {name}", "", replicate_table(runs, name, split), ""]
    for name in controls:
        lines += [f"## IMP against the {name} control", "", paired_table(runs, name, split), ""]
    for run in runs:
        suffix = f" (`{_link(run.directory, base)}`)" if len(runs) > 1 else ""
        lines += [f"## IMP rounds{suffix}", "", markdown_table(run.summary["rounds"], split), ""]
        for name, records in run.summary["controls"].items():
            lines += [f"## Control: {name}{suffix}", "", markdown_table(records, split), ""]
    records = [runs[0].records()[r] for r in sorted(runs[0].records())]
    if records and records[0].get("layers"):
        lines += ["## Weights remaining per layer (%)", "", layer_table(records), ""]
    lines += ["## Figures", ""]
    for plot in plots:
        lines += [f"![{plot.caption}]({_link(plot.png, base)})", "",
                  f"{plot.caption} ([SVG]({_link(plot.svg, base)}))", ""]
    studies = [part for run in runs for part in _analyses(run.directory, base)]
    if studies:
        lines += ["## Analyses", ""] + [part + "\n" for part in studies]
    logdirs = [results.tensorboard_dir(run.directory) for run in runs
               if results.tensorboard_dir(run.directory).is_dir()]
    if logdirs:
        lines += ["## TensorBoard", "", "Per-evaluation scalars in one run per round (`round_XX`), "
                  "per-round scalars in `rounds` and `controls/NAME`:", ""]
        lines += [f"    tensorboard --logdir {logdir}" for logdir in logdirs] + [""]
    path = results.report_path(base)
    path.write_text("\n".join(lines))
    return path


def make_report(directories, rounds_to_plot=None):
    """Figures, TensorBoard runs and report.md for experiment folders (the `analyze.py plots` command).

    Returns (report path, Plot list); everything goes into the first folder.
    """
    plots = plots_lib.write_plots(directories, rounds_to_plot)
    for directory in plots_lib.experiment_dirs(directories):
        tensorboard.write_tensorboard(directory)
    return write_report(directories, plots), plots
