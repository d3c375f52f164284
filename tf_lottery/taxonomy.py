"""Every ticket-finding method of some experiment folders at a few sizes: accuracy and what finding cost.

The methods are each folder's IMP branch (named by its reset: IMP reset to
theta_0, rewound to k, learning-rate rewinding, fine-tuning) and every
control in it. A method's row at a size is its round nearest that % of the
weights remaining (within 15%); its cost is what was trained or computed
before the ticket's own training:

- IMP and its reset variants: rounds 0..r-1 (their iterations and seconds);
- a control: what its class's `finds` says (tf_lottery.controls): nothing
  (random_prune), round 0 (one_shot), the search in the round's search.json
  (snip, grasp, synflow, early_bird), its own training, which is what finds
  the ticket (gmp, edge_popup, supermask; their accuracy is the final one:
  gmp's early stop can fall before its mask reached the size), or IMP's
  rounds for the controls on IMP's masks (random_reinit, reshuffle,
  signed_constant).

Nothing here imports TensorFlow.
"""

import dataclasses

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from tf_lottery import controls
from tf_lottery import plots
from tf_lottery import results
from tf_lottery.results import analyses

SIZES = (21.1, 5.5, 1.4)
_NEAR = 0.15


@dataclasses.dataclass(frozen=True)
class Cell:
    """One method at one round."""
    round: int
    remaining: float          # % of the weights
    accuracy: float           # test accuracy (at early stop; final for FINDS_BY_TRAINING controls)
    find_iterations: int
    find_seconds: float


@dataclasses.dataclass(frozen=True)
class Method:
    label: str
    cells: dict               # round -> Cell

    def at(self, percent):
        """The Cell nearest `percent` % remaining, or None."""
        if not self.cells:
            return None
        cell = min(self.cells.values(), key=lambda c: abs(c.remaining - percent))
        return cell if abs(cell.remaining - percent) <= _NEAR * percent else None


def imp_label(config):
    reset, k = config.get("reset"), config.get("rewind_step")
    return {"init": "IMP, reset to theta_0", "rewind": f"IMP, rewound to iteration {k}",
            "lr_rewind": f"learning-rate rewinding (from iteration {k})",
            "finetune": "fine-tuning"}.get(reset, f"IMP ({reset})")


def _imp_costs(records):
    """{round: (iterations, seconds)} of the IMP rounds before each round."""
    costs, iterations, seconds = {}, 0, 0.0
    for record in sorted(records, key=lambda r: r["round"]):
        costs[record["round"]] = (iterations, seconds)
        iterations += record.get("train_steps", 0)
        seconds += record.get("wall_seconds", 0.0)
    return costs


def _control_cost(finds, record, directory, imp_costs, round0):
    """(iterations, seconds) that finding a control round's mask cost."""
    if finds == controls.FINDS_BY_SEARCH:
        search = results.read_json(results.search_path(directory), results.retrain_round(directory))
        return search["find_iterations"], search["find_seconds"]
    if finds == controls.FINDS_BY_TRAINING:
        return record["train_steps"], record["wall_seconds"]
    if finds == controls.FINDS_BY_ROUND_0 and round0 is not None:
        return round0["train_steps"], round0["wall_seconds"]
    if finds == controls.FINDS_BY_IMP:
        return imp_costs.get(record["round"], (0, 0.0))
    return 0, 0.0


def methods(directories):
    """[Method] of every IMP branch and control in the experiment folders, in their order."""
    found = []
    for run in plots.load_runs(directories):
        imp_records = [r for r in run.summary["rounds"] if not r.get("failed")]
        imp_costs = _imp_costs(imp_records)
        round0 = next((r for r in imp_records if r["round"] == 0), None)
        found.append(Method(imp_label(run.config), {
            r["round"]: Cell(r["round"], 100 * r["remaining_fraction"], r["early_stop_test_accuracy"],
                             *imp_costs[r["round"]]) for r in imp_records}))
        for control, records in run.summary["controls"].items():
            name = control.split(".")[0]
            kind = controls.CONTROLS.get(name)
            cells = {}
            for r in records:
                if r.get("failed"):
                    continue
                cost = _control_cost(kind.finds, r, run.round_dir(r["round"], control), imp_costs, round0)
                accuracy = r["final_test_accuracy" if kind.finds == controls.FINDS_BY_TRAINING
                             else "early_stop_test_accuracy"]
                cells[r["round"]] = Cell(r["round"], 100 * r["remaining_fraction"], accuracy, *cost)
            suffix = f", draw {control.split('.')[1]}" if "." in control else ""
            found.append(Method((kind.label or name) + suffix, cells))
    return found


def table(found, sizes=SIZES):
    """Markdown: a row per method, per size the accuracy, iterations and seconds it cost to find."""
    header = "| method | " + " | ".join(f"~{s:g}%: test acc | iterations to find | seconds to find"
                                        for s in sizes) + " |"
    lines = [header, "|---|" + "---:|" * (3 * len(sizes))]
    for method in found:
        cells = []
        for size in sizes:
            cell = method.at(size)
            cells += (["-"] * 3 if cell is None else
                      [f"{100 * cell.accuracy:.2f}% ({cell.remaining:.1f}%)", f"{cell.find_iterations:,}",
                       f"{cell.find_seconds:,.0f}"])
        lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(found, out_dir):
    """Test accuracy against weights remaining, one line per method."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    percents = []
    for i, method in enumerate(found):
        cells = sorted(method.cells.values(), key=lambda c: -c.remaining)
        if not cells:
            continue
        x = np.array([c.remaining for c in cells])
        y = np.array([c.accuracy for c in cells])
        ax.plot(x, y, marker="os^vD<>ph*"[i % 10], linestyle=("-", "--")[i // 10 % 2] if len(cells) > 1 else
                "none", color=colormaps["tab20"](i % 20), label=method.label, markersize=5)
        percents += list(x)
    plots.remaining_axis(ax, percents)
    ax.set_ylabel("test accuracy (early stop; final for the methods that train their own mask)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return plots.save_figure(fig, out_dir, "taxonomy_accuracy",
                             "Test accuracy against weights remaining, every method of the folders.")


def write(directories, sizes=SIZES):
    """Writes analysis/taxonomy.md and plots/taxonomy_accuracy.(png|svg) in the first folder."""
    found = methods(directories)
    first = directories[0]
    plot = figure(found, results.plots_dir(first))
    path = analyses.taxonomy_path(first)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Methods at {', '.join(f'{s:g}%' for s in sizes)} of the weights\n\n"
                    + table(found, sizes) + f"\n\n![{plot.caption}](../plots/{plot.png.name})\n")
    return path, plot
