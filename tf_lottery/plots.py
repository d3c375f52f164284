"""Figures from results folders (matplotlib, drawn off-screen: no pyplot, no global backend).

  accuracy_vs_remaining    test accuracy at the early-stop iteration vs % of weights remaining
  early_stop_vs_remaining  early-stop iteration vs % of weights remaining
  test_accuracy_curves     test accuracy over training, one panel per selected round
  layer_remaining          remaining fraction of each pruned tensor per round
  first_layer_inputs       surviving first-layer weights per input pixel (MNIST MLPs)

The x axes of the first two are logarithmic and reversed, as in Frankle &
Carbin's figures. Every figure draws the controls beside the ticket; given
several folders (replicates of one config), lines are means over them and
bands their min-max range. Runs without test accuracy (run_rounds without
test data) get val_accuracy_vs_remaining and val_accuracy_curves instead.
Files are found through `tf_lottery.results`; nothing here imports TensorFlow.
"""

import dataclasses
import pathlib

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from tf_lottery import results
from tf_lottery.results import analyses
from tf_lottery.settings import ConfigError

CONTROL_LABELS = {"random_reinit": "random reinit (same mask)",
                  "random_prune": "random pruning",
                  "one_shot": "one-shot pruning"}


def control_label(branch):
    """The legend label of a control's branch name (NAME or NAME.DRAW)."""
    name, _, draw = branch.partition(".")
    label = CONTROL_LABELS.get(name, name)
    return f"{label}, draw {draw}" if draw else label


def _styles(count):
    """(color, marker, linestyle) for `count` controls: C1.., as many as there are controls."""
    markers, linestyles = "s^vD<>ph*x", ("--", "-.", ":")
    return [(f"C{1 + i % 9}", markers[i % len(markers)], linestyles[i % len(linestyles)])
            for i in range(count)]
_MNIST_PIXELS = 784


@dataclasses.dataclass(frozen=True)
class Run:
    """One experiment folder: its path, config.json and summary.json."""
    directory: pathlib.Path
    config: dict
    summary: dict

    def records(self, control=None):
        """The finished, not failed, round records of the IMP rounds or of a control, by round."""
        records = self.summary["controls"].get(control, []) if control else self.summary["rounds"]
        return {r["round"]: r for r in records if not r.get("failed")}

    def round_dir(self, round_index, control=None):
        """The folder of a round (of a control)."""
        return results.round_dir(self.directory, round_index, control)


@dataclasses.dataclass(frozen=True)
class Plot:
    """A written figure: its name, a one-line caption and its PNG and SVG files."""
    name: str
    caption: str
    png: pathlib.Path
    svg: pathlib.Path


def experiment_dirs(directories):
    """The experiment folders named by `directories`; a folder of seed_* replicates stands for them."""
    found = []
    for directory in map(pathlib.Path, directories):
        if results.config_path(directory).is_file():
            found.append(directory)
            continue
        replicates = sorted(p for p in directory.glob("seed_*") if results.config_path(p).is_file())
        if not replicates:
            raise ConfigError("experiment_dir", f"{directory} has no {results.CONFIG} (nor "
                              f"seed_*/{results.CONFIG}); is it an experiment folder?")
        found += replicates
    if not found:
        raise ConfigError("experiment_dir", "is required")
    return found


def load_runs(directories):
    """Run objects for experiment_dirs(directories)."""
    runs = []
    for directory in experiment_dirs(directories):
        summary = results.read_summary(directory)
        if not summary["rounds"]:
            raise ConfigError("experiment_dir", f"{directory} has no finished round yet")
        runs.append(Run(directory, results.read_config(directory), summary))
    return runs


def control_names(runs):
    """Controls present in every run, in the first run's order."""
    return [name for name in runs[0].summary["controls"]
            if all(name in r.summary["controls"] for r in runs)]


def default_rounds(runs, count=4):
    """Up to `count` finished rounds spread evenly from round 0 to the last."""
    finished = sorted(set.intersection(*(set(r.records()) for r in runs)))
    if len(finished) <= count:
        return finished
    return sorted({finished[int(round(i))] for i in np.linspace(0, len(finished) - 1, count)})


def check_rounds(runs, rounds):
    """The requested rounds if each is finished in every run; else ConfigError naming rounds_to_plot."""
    finished = set.intersection(*(set(r.records()) for r in runs))
    missing = sorted(set(rounds) - finished)
    if missing:
        raise ConfigError("rounds_to_plot", f"rounds {', '.join(map(str, missing))} are not finished "
                          f"(finished: {', '.join(map(str, sorted(finished)))})")
    return sorted(set(rounds))


SPLIT_NAMES = {"test": "test", "val": "validation"}


def accuracy_split(runs):
    """'test' if every finished record of the runs has its test accuracies, else 'val' (runs of
    imp.run_rounds without test data): the accuracy the figures and tables show."""
    records = [rec for run in runs for group in (run.summary["rounds"], *run.summary["controls"].values())
               for rec in group if not rec.get("failed")]
    tested = all(rec.get(f"{when}_test_accuracy") is not None
                 for rec in records for when in ("early_stop", "final"))
    return "test" if tested else "val"


def aggregate(runs, field, control=None):
    """[(round, mean % remaining, mean, min, max)] of a record field over rounds every run finished
    (NaN where a record has no value)."""
    per_run = [run.records(control) for run in runs]
    rounds = sorted(set.intersection(*(set(r) for r in per_run)))
    rows = []
    for r in rounds:
        values = np.array([np.nan if records[r][field] is None else float(records[r][field])
                           for records in per_run])
        remaining = np.mean([100 * records[r]["remaining_fraction"] for records in per_run])
        rows.append((r, float(remaining), float(values.mean()), float(values.min()),
                     float(values.max())))
    return rows


def _ticket_label(config):
    reset, k = config.get("reset"), config.get("rewind_step")
    if reset == "rewind":
        return f"IMP ticket (rewind to iteration {k})"
    if reset == "lr_rewind":
        return f"IMP, trained weights (learning rate rewound to iteration {k})"
    if reset == "finetune":
        return "IMP, trained weights (fine-tuned)"
    return r"IMP ticket (reset to $\theta_0$)"


def model_name(config):
    """A readable model name: LeNet-300-100 for lenet, else the builder name."""
    if config.get("model") == "lenet":
        return f"LeNet-{'-'.join(map(str, config.get('hidden', [])))}"
    return str(config.get("model"))


def _title(runs, what):
    config = runs[0].config
    spread = f" (mean, band: min-max of {len(runs)} runs)" if len(runs) > 1 else ""
    return f"{model_name(config)} on {config.get('dataset')}{spread}\n{what}"


def remaining_axis(ax, percents):
    """Log-scaled, reversed x axis of % remaining, ticked at the rounds' values."""
    values = sorted({round(p, 1) for p in percents}, reverse=True)
    step = max(1, -(-len(values) // 9))
    ax.set_xscale("log")
    ax.set_xlim(max(values) * 1.08, min(values) / 1.08)  # reversed: 100% on the left
    ax.xaxis.set_major_locator(ticker.FixedLocator(values[::step]))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("weights remaining (%, log scale)")


def _band(ax, x, low, high, color):
    if not np.allclose(low, high):
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def draw_series(ax, rows, label, color, marker, linestyle):
    _, x, mean, low, high = (np.array(c) for c in zip(*rows))
    ax.plot(x, mean, color=color, marker=marker, linestyle=linestyle, label=label, markersize=5)
    _band(ax, x, low, high, color)


def save_figure(fig, out_dir, name, caption):
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=100)
    fig.savefig(svg, metadata={"Date": None})
    return Plot(name, caption, png, svg)


def _versus_remaining(runs, out_dir, field, name, ylabel, what):
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ticket = aggregate(runs, field)
    draw_series(ax, ticket, _ticket_label(runs[0].config), "C0", "o", "-")
    percents = [row[1] for row in ticket]
    names = control_names(runs)
    for (color, marker, linestyle), control in zip(_styles(len(names)), names):
        rows = aggregate(runs, field, control)
        if rows:
            draw_series(ax, rows, control_label(control), color, marker, linestyle)
            percents += [row[1] for row in rows]
    if field.endswith("_accuracy") and ticket[0][0] == 0:
        ax.axhline(ticket[0][2], color="0.5", linewidth=0.8, linestyle=":",
                   label="dense network (round 0)")
    remaining_axis(ax, percents)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(runs, what), fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    return save_figure(fig, out_dir, name, what[0].upper() + what[1:] + ".")


def plot_accuracy_vs_remaining(runs, out_dir, split="test"):
    """Test (or validation, split 'val') accuracy at the early-stop iteration against % of weights remaining."""
    name, note = ("accuracy_vs_remaining", "") if split == "test" else ("val_accuracy_vs_remaining", _NO_TEST)
    what = f"{SPLIT_NAMES[split]} accuracy at the early-stop iteration vs weights remaining{note}"
    return _versus_remaining(runs, out_dir, f"early_stop_{split}_accuracy", name,
                             f"{SPLIT_NAMES[split]} accuracy at early stop", what)


_NO_TEST = " (no test accuracy recorded)"


def plot_early_stop_vs_remaining(runs, out_dir):
    """The early-stop iteration (minimum validation loss) against % of weights remaining."""
    return _versus_remaining(runs, out_dir, "early_stop_iteration", "early_stop_vs_remaining",
                             "early-stop iteration (min. validation loss)",
                             "early-stop iteration vs weights remaining")


def _mean_curve(runs, round_index, control=None, split="test"):
    """(iterations, mean, min, max) of test (or validation) accuracy over the runs' curves of one round,
    or None."""
    curves = []
    for run in runs:
        directory = run.round_dir(round_index, control)
        if not (results.is_finished(directory) and results.curve_path(directory).is_file()):
            return None
        curves.append({c["iteration"]: np.nan if c[f"{split}_accuracy"] is None else c[f"{split}_accuracy"]
                       for c in results.read_curve(directory)})
    iterations = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[i] for i in iterations] for c in curves])
    return np.array(iterations), values.mean(0), values.min(0), values.max(0)


def plot_accuracy_curves(runs, out_dir, rounds, split="test"):
    """Test (or validation) accuracy over training iterations for `rounds`, one panel each, ticket and
    controls."""
    controls = control_names(runs)
    fig = Figure(figsize=(3.9 * len(rounds) + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(rounds), sharey=True, squeeze=False)[0]
    shown = []
    for ax, r in zip(axes, rounds):
        lines = [(_ticket_label(runs[0].config), None, ("C0", "o", "-"))]
        lines += [(control_label(c), c, style) for style, c in zip(_styles(len(controls)), controls)]
        for label, control, (color, _, linestyle) in lines:
            curve = _mean_curve(runs, r, control, split)
            if curve is None:
                continue
            x, mean, low, high = curve
            ax.plot(x, mean, color=color, linestyle=linestyle, label=label, linewidth=1.4)
            _band(ax, x, low, high, color)
            shown.append(mean[len(mean) // 10:])
            record = runs[0].records(control).get(r)
            if len(runs) == 1 and record:
                ax.plot(record["early_stop_iteration"], record[f"early_stop_{split}_accuracy"], marker="*",
                        color=color, markersize=10, markeredgecolor="black", linestyle="none")
        remaining = 100 * runs[0].records()[r]["remaining_fraction"]
        ax.set_title(f"round {r}: {remaining:.1f}% remaining", fontsize=10)
        ax.set_xlabel("training iteration")
        ax.grid(True, alpha=0.3)
    values = np.concatenate(shown)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    margin = 0.1 * (high - low) + 0.005
    axes[0].set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    axes[0].set_ylabel(f"{SPLIT_NAMES[split]} accuracy")
    legend = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles))
    labels, handles = list(legend), list(legend.values())
    if len(runs) == 1:
        handles.append(axes[0].plot([], [], marker="*", color="0.6", markeredgecolor="black",
                                    linestyle="none", markersize=10)[0])
        labels.append("early-stop iteration")
    axes[-1].legend(handles, labels, fontsize=8, loc="lower right")
    what = f"{SPLIT_NAMES[split]} accuracy during training"
    fig.suptitle(_title(runs, f"{what} (y axis zoomed)").replace("\n", ": "), fontsize=11)
    return save_figure(fig, out_dir, f"{split}_accuracy_curves",
                       f"{what[0].upper()}{what[1:]} in rounds {', '.join(map(str, rounds))}, ticket and "
                       f"controls (stars: early-stop iterations){'' if split == 'test' else _NO_TEST}.")


def plot_layer_remaining(runs, out_dir):
    """The remaining fraction of each pruned tensor per round (first run), with the overall fraction."""
    records = [runs[0].records()[r] for r in sorted(runs[0].records())]
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    rounds = [rec["round"] for rec in records]
    for i, key in enumerate(records[0].get("layers", {})):
        ax.plot(rounds, [100 * rec["layers"][key]["remaining_fraction"] for rec in records],
                marker="osv^Dp<>"[i % 8], markersize=6 - 0.5 * (i % 3), fillstyle="none",
                color=f"C{i % 10}",
                label=f"{key} ({records[0]['layers'][key]['size']:,} weights)")
    ax.plot(rounds, [100 * rec["remaining_fraction"] for rec in records], color="black",
            linestyle="--", label="all pruned weights")
    ax.set_yscale("log")
    percent = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(percent)
    ax.yaxis.set_minor_formatter(percent)
    ax.set_xticks(rounds)
    ax.set_xlabel("pruning round")
    ax.set_ylabel("weights remaining (%, log scale)")
    ax.set_title(f"{model_name(runs[0].config)} on {runs[0].config.get('dataset')}\n"
                 "weights remaining per layer", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    return save_figure(fig, out_dir, "layer_remaining", "Remaining fraction of each pruned tensor per round.")


def first_layer_key(mask):
    """Key of the first masked weight of shape (784, n) (an MNIST MLP's first layer), or None."""
    return next((k for k, v in mask.items() if v.ndim == 2 and v.shape[0] == _MNIST_PIXELS), None)


def finished_masks(run, rounds):
    """{round: masks} of those of `rounds` that are finished in `run` (the IMP rounds)."""
    finished = set(results.finished_rounds(run.directory))
    return {r: results.round_masks(run.directory, r) for r in rounds if r in finished}


def plot_first_layer_inputs(runs, out_dir, rounds):
    """Per input pixel, how many first-layer weights survive, as 28x28 maps; None if not an MNIST MLP.

    Rounds whose first layer is still dense are left out; each map has its own
    colour scale, so that the spatial pattern shows at every sparsity.
    """
    masks = finished_masks(runs[0], rounds)
    key = first_layer_key(next(iter(masks.values()))) if masks else None
    if key is None:
        return None
    masks = {r: mask[key] for r, mask in masks.items() if mask[key].min() == 0}
    if not masks:
        return None
    width = next(iter(masks.values())).shape[1]
    fig = Figure(figsize=(3.6 * len(masks) + 0.4, 3.9), layout="constrained")
    axes = fig.subplots(1, len(masks), squeeze=False)[0]
    for ax, (r, mask) in zip(axes, masks.items()):
        image = ax.imshow(mask.sum(axis=1).reshape(28, 28), cmap="viridis")
        ax.set_title(f"round {r}: {100 * mask.mean():.1f}% of {key.split('/')[0]} left", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"{key}: surviving weights per input pixel (out of {width})", fontsize=11)
    return save_figure(fig, out_dir, "first_layer_inputs",
                 f"Surviving weights of {key} per input pixel "
                 f"(sum of the mask over its {width} outputs).")


def plot_rewind_search(search, out_dir):
    """Test accuracy and instability of a round's mask against the iteration it is rewound to."""
    rows = search["candidates"]
    iterations = [row["iteration"] for row in rows]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    accuracy, instability = fig.subplots(1, 2)
    copies = np.array([[c["early_stop_test_accuracy"] for c in row["copies"]] for row in rows])
    accuracy.plot(iterations, copies.mean(1), "o-", color="C0", label="mean of the copies")
    _band(accuracy, iterations, copies.min(1), copies.max(1), "C0")
    accuracy.set_ylabel("test accuracy at early stop")
    instability.plot(iterations, [row["instability"] for row in rows], "s-", color="C3")
    instability.axhline(search["threshold"], color="0.5", linestyle=":", linewidth=0.8,
                        label=f"threshold {search['threshold']}")
    instability.set_ylabel("instability (error barrier)")
    picks = search.get("picks", {"instability": search.get("earliest_stable")})
    for ax, (criterion, k), color in zip((instability, accuracy), sorted(picks.items(), reverse=True),
                                         ("C3", "C0")):
        if k is not None:
            for axis in (accuracy, instability):
                axis.axvline(k, color=color, linestyle="--", linewidth=0.8,
                             label=f"{criterion} picks {k}" if axis is ax else None)
    for ax in (accuracy, instability):
        ax.set_xscale("symlog", linthresh=max(1, min(i for i in iterations if i > 0) if any(iterations) else 1))
        ax.set_xlabel("rewind iteration k")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Round {search['round']}'s mask ({100 * search['remaining_fraction']:.1f}% remaining) "
                 "rewound to iteration k, two copies trained", fontsize=11)
    name = f"rewind_search_round_{search['round']:02d}"
    return save_figure(fig, out_dir, name,
                       f"Test accuracy and instability of round {search['round']}'s mask against the "
                       "rewind iteration (band: the two copies).")


def write_plots(directories, rounds_to_plot=None):
    """Writes every figure into `first directory/plots/` as PNG and SVG; returns the Plot list."""
    runs = load_runs(directories)
    out_dir = results.plots_dir(directories[0])
    rounds = check_rounds(runs, rounds_to_plot) if rounds_to_plot else default_rounds(runs)
    split = accuracy_split(runs)
    plots = [plot_accuracy_vs_remaining(runs, out_dir, split), plot_early_stop_vs_remaining(runs, out_dir),
             plot_accuracy_curves(runs, out_dir, rounds, split), plot_layer_remaining(runs, out_dir),
             plot_first_layer_inputs(runs, out_dir, rounds)]
    for path in analyses.rewind_search_paths(runs[0].directory):
        search = analyses.read(path)
        if all("copies" in row for row in search["candidates"]):
            plots.append(plot_rewind_search(search, out_dir))
    return [p for p in plots if p is not None]
