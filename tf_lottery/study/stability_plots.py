"""The figures of the stability records of several seeds: each quantity against the rewind point k.

One figure per quantity of tf_lottery.study.stability's tables (test accuracy
at early stop, stability to pruning and to data order as relative distances,
the instability of the two data orders' copies), one panel per size (round),
IMP's mask and the random mask with the same per-tensor counts side by side:
lines are the means over seeds, bands their 95% t intervals (no band below
two seeds). The accuracy panels also show the full network trained from the
same theta_k (dotted). The rewind points are spaced evenly on the x axis.
Nothing here imports TensorFlow.
"""

import numpy as np
from matplotlib.figure import Figure

from tf_lottery import plots
from tf_lottery.study import inference
from tf_lottery.study import stability

# field: (file name, y label, scale of the values shown)
QUANTITIES = {"test_accuracy": ("stability_accuracy", "test accuracy at early stop (%)", 100),
              "pruning_relative_distance": ("stability_pruning_distance",
                                            "stability to pruning (relative distance; lower: more stable)", 1),
              "data_order_relative_distance": ("stability_data_order_distance",
                                               "stability to data order (relative distance; lower: more stable)", 1),
              "instability": ("stability_instability", "instability (error barrier)", 1)}
STYLES = {stability.IMP: ("IMP's mask (the ticket)", "C0", "o", "-"),
          stability.RANDOM: ("random pruning, same per-tensor counts", "C1", "s", "--")}
FULL = ("full network from the same theta_k", "0.4", "^", ":")


def _series(values_per_k, scale):
    """(means, lows, highs) over seeds of [values per seed] per k, scaled; NaN bounds without an interval."""
    found = [inference.mean(values) for values in values_per_k]
    bound = [(e.low, e.high) if e.has_interval else (np.nan, np.nan) for e in found]
    return (scale * np.array([e.value for e in found]), scale * np.array([b[0] for b in bound], float),
            scale * np.array([b[1] for b in bound], float))


def _draw(ax, x, series, style):
    label, color, marker, linestyle = style
    mean, low, high = series
    ax.plot(x, mean, color=color, marker=marker, linestyle=linestyle, label=label, markersize=5)
    if not np.isnan(low).any():
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def figure(rounds, field, out_dir, title=""):
    """One quantity's figure (PNG and SVG in out_dir); its plots.Plot."""
    name, ylabel, scale = QUANTITIES[field]
    sizes = list(rounds.by_round)
    fig = Figure(figsize=(3.6 * len(sizes) + 1.0, 4.6), layout="constrained")
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    for ax, r in zip(axes, sizes):
        steps = rounds.first(r)["rewind_steps"]
        x = np.arange(len(steps))
        for mask in rounds.masks(r):
            style = STYLES.get(mask, (mask, "C2", "d", "-."))
            _draw(ax, x, _series([rounds.values(r, mask, k, field) for k in steps], scale), style)
        if field == "test_accuracy":
            _draw(ax, x, _series([rounds.dense(r, k) for k in steps], scale), FULL)
        ax.set_xticks(x, [str(k) for k in steps])
        ax.set_xlabel("rewind point k (iteration of round 0)")
        ax.set_title(f"{100 * rounds.first(r)['remaining_fraction']:.1f}% remaining (round {r}), "
                     f"{len(rounds.seeds(r))} seed{'s' if len(rounds.seeds(r)) > 1 else ''}", fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(ylabel.replace("; ", ";\n"))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    what = f"{ylabel.split(' (')[0]} against the rewind point"
    fig.suptitle(f"{title}{chr(10) if title else ''}{what} (mean over seeds, band 95% interval)", fontsize=11)
    return plots.save_figure(fig, out_dir, name,
                             f"{what[0].upper()}{what[1:]}, IMP's mask beside random pruning's, one panel per "
                             "size (mean over seeds, band 95% interval).")


def write_figures(rounds, out_dir, title=""):
    """Every quantity's figure of a stability_study.Rounds in out_dir; the plots.Plot list."""
    return [figure(rounds, field, out_dir, title) for field in QUANTITIES]
