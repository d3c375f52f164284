"""report.md and figures of a study folder (the `analyze study` command).

The report groups the finished points by the grid's axes (seeds are
replicates): per group and round, for IMP and each control (its draws
pooled), the mean with its 95% t interval, the min-max and n of the test
accuracy at early stop, the early-stop iteration and the final test
accuracy; figures of accuracy and early-stop iteration against weights
remaining, one line per group, and per group the ticket beside its controls,
with 95% interval bands; IMP against each control, each group against
the first position of its axis, and how much IMP's lead over a control moves
between those groups, with 95% t intervals of the difference; each point's
training time. Figures go to STUDY/plots/, the report to
STUDY/report.md (paths from tf_lottery.results); the axes, labels and file
writing are tf_lottery.plots' helpers.
"""

import os
import pathlib

from matplotlib.figure import Figure

from tf_lottery import plots
from tf_lottery import report as experiment_report
from tf_lottery import results
from tf_lottery.settings import ConfigError
from tf_lottery.study import claims as claims_lib
from tf_lottery.study import statistics

_MARKERS = "os^vDp<>"
_LINESTYLES = ("-", "--", "-.", ":")


def _link(path, base):
    return pathlib.Path(os.path.relpath(path, base)).as_posix()


def _bands(rows):
    """plots.draw_series rows (round, % remaining, mean, band low, band high): the 95% interval,
    or the mean itself where there is no interval (one value)."""
    return [(row.round, row.remaining, row.mean, row.mean if row.ci_low is None else row.ci_low,
             row.mean if row.ci_high is None else row.ci_high) for row in rows]


def _figure(data, lines, field, name, ylabel, what, caption):
    """A figure of `field` against % remaining: lines = [(label, group, control)], 95% bands."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    percents = []
    for i, (label, group, control) in enumerate(lines):
        rows = statistics.round_stats(group, field, control)
        if not rows:
            continue
        plots.draw_series(ax, _bands(rows), f"{label} (n={rows[-1].n})", f"C{i % 10}",
                          _MARKERS[i % len(_MARKERS)], _LINESTYLES[i % len(_LINESTYLES)])
        percents += [row.remaining for row in rows]
    plots.remaining_axis(ax, percents)
    ax.set_ylabel(ylabel)
    config = data.base
    ax.set_title(f"{plots.model_name(config)} on {config.get('dataset')}: {what}\n"
                 "lines: means, bands: 95% intervals", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return plots.save_figure(fig, results.plots_dir(data.study_dir), name, caption)


_DIFFERENCE_FIELDS = ("early_stop_test_accuracy", "early_stop_iteration")
_INTERVAL = ("a 95% Student t interval, the seed the unit (a control's draws averaged within their seed "
             "first; paired by seed where both sides have the same seeds, Welch's otherwise; the table "
             "names the method)")
_EXPLORATORY = ("Exploratory: these rounds are not the paper's pre-stated claims. Each column tests "
                "every round at once: † marks a round whose difference stays clear of zero after "
                "Holm's correction over the column's rounds (family-wise 5%).")
_FIGURE_FIELDS = (("early_stop_test_accuracy", "accuracy", "test accuracy at early stop"),
                  ("early_stop_iteration", "early_stop", "early-stop iteration"))


def write_figures(data):
    """The study's figures (PNG and SVG) in STUDY/plots/; returns the plots.Plot list."""
    figures = []
    for field, short, ylabel in _FIGURE_FIELDS:
        what = f"{ylabel} vs weights remaining"
        figures.append(_figure(
            data, [(group.label, group, None) for group in data.groups], field,
            f"study_{short}_vs_remaining", ylabel, what,
            f"{what[0].upper()}{what[1:]}, one line per group (IMP; mean across seeds, band 95% interval)."))
    controls = data.controls()
    for index, group in enumerate(data.groups if controls else ()):
        lines = [("IMP", group, None)] + [(plots.control_label(c), group, c) for c in controls]
        suffix = "" if len(data.groups) == 1 else f"_group{index}"
        for field, short, ylabel in _FIGURE_FIELDS:
            what = f"{ylabel}, ticket and controls"
            figures.append(_figure(
                data, lines, field, f"study_{short}_controls{suffix}", ylabel, what,
                f"{ylabel[0].upper()}{ylabel[1:]} of IMP and its controls ({group.label}; mean over seeds "
                "and draws, band 95% interval)."))
    return figures


def _number(value, field):
    return f"{value:.0f}" if field == "early_stop_iteration" else f"{value:.4f}"


def _mean_cell(row, field):
    interval = ("" if row.ci_low is None else
                f" [{_number(row.ci_low, field)}, {_number(row.ci_high, field)}]")
    return f"{_number(row.mean, field)}{interval} ({_number(row.low, field)}-{_number(row.high, field)})"


def _spread_cell(row, field):
    return "" if row.within_sd is None else _number(row.within_sd, field)


def group_table(group, control=None):
    """Per round: % remaining, then mean [95% interval] (min-max) over the seeds of each field, and n
    seeds; where a seed has several draws, the draws in all and each field's within-seed SD."""
    columns = {field: {row.round: row for row in statistics.round_stats(group, field, control)}
               for field in statistics.FIELDS}
    first = columns["early_stop_test_accuracy"]
    draws = any(row.draws > row.n for row in first.values())
    header = ("| round | remaining % | " + " | ".join(f"{label}: mean [95% CI] (min-max)"
                                                    for label in statistics.FIELDS.values()) + " | n seeds |")
    if draws:
        header += " draws | " + " | ".join(f"{label}: within-seed SD" for label in statistics.FIELDS.values()) + " |"
    lines = [header, "|" + "---:|" * (len(statistics.FIELDS) * (2 if draws else 1) + 3 + draws)]
    for r in sorted(first):
        cells = [_mean_cell(rows[r], field) for field, rows in columns.items()]
        line = f"| {r} | {first[r].remaining:.2f} | " + " | ".join(cells) + f" | {first[r].n} |"
        if draws:
            line += f" {first[r].draws} | " + " | ".join(_spread_cell(rows[r], field)
                                                       for field, rows in columns.items()) + " |"
        lines.append(line)
    return "\n".join(lines)


def _interval(estimate, field, clear):
    mark = " †" if clear else ""
    if not estimate.has_interval:
        return f"{_number(estimate.value, field)} (n < 2)"
    return (f"{_number(estimate.value, field)} [{_number(estimate.low, field)}, "
            f"{_number(estimate.high, field)}]{mark}")


def _rounds_table(rows, what):
    """Markdown of {field: [DifferenceRow]}: a row per round, a column per field, Holm's marks per
    column, and the methods and the number of comparisons below."""
    clear = {field: statistics.inference.holm([row.estimate.p for row in column])
             for field, column in rows.items()}
    lines = ["| round | remaining % | " + " | ".join(f"{statistics.FIELDS[f]} {what} [95% CI]" for f in rows)
             + " | n seeds |", "|" + "---:|" * (len(rows) + 3)]
    for i, parts in enumerate(zip(*rows.values())):
        cells = [_interval(row.estimate, field, clear[field][i]) for row, field in zip(parts, rows)]
        lines.append(f"| {parts[0].round} | {parts[0].remaining:.2f} | " + " | ".join(cells)
                     + f" | {parts[0].estimate.n} |")
    methods = sorted({row.estimate.method for column in rows.values() for row in column})
    count = len(next(iter(rows.values()), []))
    lines += ["", f"{count} round{'' if count == 1 else 's'} compared per column; method: {', '.join(methods) or 'none'}."]
    return "\n".join(lines)


def difference_table(side_a, side_b, fields=_DIFFERENCE_FIELDS):
    """Per round: mean difference a - b of each field with its 95% interval and Holm's mark, and n."""
    return _rounds_table({field: statistics.difference_rows(side_a, side_b, field) for field in fields},
                         "difference")


def gap_table(group, reference, control, fields=_DIFFERENCE_FIELDS):
    """Per round: the change of the IMP - control gap from `reference` to `group`, per field."""
    return _rounds_table({field: statistics.gap_difference_rows(group, reference, control, field)
                          for field in fields}, "gap change")


def _duration(seconds):
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _training(directory):
    """(rounds, seconds) of every round recorded in a point's summary.json, controls included."""
    summary = results.read_summary(directory)
    records = summary["rounds"] + [r for rs in summary["controls"].values() for r in rs]
    return len(records), sum(r.get("wall_seconds", 0.0) for r in records)


def _points_table(data):
    lines = ["| # | " + " | ".join(a.name for a in data.axes) + " | state | rounds | training time | folder |",
             "|---:|" + "---|" * (len(data.axes) + 1) + "---:|---:|---|"]
    total_rounds, total_seconds = 0, 0.0
    for entry in data.entries:
        values = [", ".join(str(entry["values"].get(n)) for n in a.names) for a in data.axes]
        state = entry["state"] + (f": {entry['error']}" if entry.get("error") else "")
        rounds, seconds = _training(data.study_dir / entry["folder"])
        if entry["state"] == "finished":
            total_rounds, total_seconds = total_rounds + rounds, total_seconds + seconds
        lines.append(f"| {entry['index']} | " + " | ".join(values) + f" | {state.replace('|', '/')} | "
                     f"{rounds} | {_duration(seconds)} | `{entry['folder']}` |")
    lines += ["", f"Training time over the finished points: {_duration(total_seconds)} in {total_rounds} "
                  "rounds (IMP and controls; each round's wall time as its summary.json records it)."]
    return "\n".join(lines)


def write_report(data, figures, claims=None):
    """Writes STUDY/report.md (with claim set `claims` checked per group, if given); returns its path."""
    base = data.study_dir
    axes = " ".join(f"`--grid={a.entry}`" for a in data.axes) or "no axes"
    replicates = [a.name for a in data.axes if statistics.is_replicate_axis(a)]
    lines = [f"# Study report: {base.resolve().name}", "",
             f"Base experiment: {experiment_report.describe(data.base)}", "",
             f"Grid: {axes}. Replicate axes (statistics across them): "
             f"{', '.join(replicates) or 'none'}. {len(data.groups)} groups of finished points.", "",
             "## Points", "", _points_table(data), ""]
    controls = data.controls()
    for group in data.groups:
        lines += [f"## Group: {group.label}", "", group_table(group), ""]
        for control in controls:
            lines += [f"### {group.label}: control {control}", "", group_table(group, control), ""]
    lines += ["## Figures", ""]
    for plot in figures:
        lines += [f"![{plot.caption}]({_link(plot.png, base)})", "",
                  f"{plot.caption} ([SVG]({_link(plot.svg, base)}))", ""]
    if controls:
        lines += ["## Ticket versus control", "",
                  "IMP minus the control on the same masks, per group; mean over seeds with "
                  f"{_INTERVAL}.", "", _EXPLORATORY, ""]
        for group in data.groups:
            for control in controls:
                lines += [f"### {group.label}: IMP - {control}", "",
                          difference_table((group, None), (group, control)), ""]
    if claims:
        lines += [f"## The paper's claims ({claims})", "", claims_lib.CLAIM_SETS.help(claims) + ". "
                  + claims_lib.RULES, ""]
        for group in data.groups:
            if len(data.groups) > 1:
                lines += [f"### {group.label}", ""]
            findings = claims_lib.check(group, claims)
            counts = ", ".join(f"{n} {verdict}" for verdict, n in claims_lib.verdict_counts(findings).items())
            lines += [claims_lib.claims_table(findings), "", f"Verdicts: {counts} (of {len(findings)}).", ""]
    found = statistics.comparisons(data)
    if found:
        lines += ["## Group versus group", "",
                  "Each position of an axis minus the axis's first position, the other axes held "
                  f"fixed; mean over seeds with {_INTERVAL}.", "", _EXPLORATORY, ""]
        for axis, position, context, group, reference in found:
            lines += [f"### {axis.label(position)} minus {axis.label(0)}"
                      + (f" (at {context})" if context != "all points" else ""), "",
                      difference_table((group, None), (reference, None)), ""]
    if found and controls:
        lines += ["## Ticket-versus-control gap, group versus group", "",
                  "How much IMP's lead over each control (IMP minus the control, per seed) changes from "
                  "the axis's first position to each other one; mean over seeds with "
                  f"{_INTERVAL}.", "", _EXPLORATORY, ""]
        for axis, position, context, group, reference in found:
            for control in controls:
                lines += [f"### {axis.label(position)} minus {axis.label(0)}: IMP - {control}"
                          + (f" (at {context})" if context != "all points" else ""), "",
                          gap_table(group, reference, control), ""]
    path = results.report_path(base)
    path.write_text("\n".join(lines))
    return path


def make_report(study_dir, claims=None):
    """Figures and report.md of a study folder, with claim set `claims` checked if given; returns
    (report path, plots.Plot list)."""
    if claims is not None and claims not in claims_lib.CLAIM_SETS:
        raise ConfigError("claims", f"must be one of {', '.join(claims_lib.CLAIM_SETS.names())}, "
                                    f"got {claims!r}")
    data = statistics.load(study_dir)
    if not data.groups:
        raise ConfigError("study_dir", f"{study_dir} has no finished point yet")
    figures = write_figures(data)
    return write_report(data, figures, claims), figures
