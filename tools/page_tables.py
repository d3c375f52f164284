"""More tables for tools/pages.py (its TABLES take these by name): one-seed experiments, and a
summary of a study's group-versus-group comparisons.

One seed and one evaluation per round give no interval: every number of the one-seed tables is a
single measurement, every difference descriptive. Accuracies are in %, differences in points.

  ticket_es         per round, the ticket's test accuracy at early stop (the paper's metric)
                    against the dense network's and against its reinitialised mask's, and the
                    early-stop iterations
  ticket_final      the same at the end of training (secondary)
  dense_single      the dense network (round 0) against the paper's dense Conv-2
  conv2_beside      the paper's statements on Conv-2 (attributed) beside this run's numbers
  filter_beside     the filter-pruned run's rounds beside the unstructured run's
  conv2_export      the shrunk export of the filter-pruned round 3, and its latency
  taxonomy_gap      per method of `analyze taxonomy`'s table and per size, its accuracy minus IMP's
                    (reset to theta_0) and minus the dense network's, and which methods have
                    the same accuracy in every round
  group_holm        per group-versus-group comparison of a study and per field: the rounds
                    compared, and how many intervals stay clear of zero before and after Holm

Each takes (sources, packs), packs being the block's `experiment=` and `study=` packs.
"""

import json
import pathlib

from tf_lottery import results
from tf_lottery import taxonomy
from tf_lottery.study import statistics

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = REPO / "docs" / "results" / "data"
CONTROL = "random_reinit"
DIFFERENCE_FIELDS = ("early_stop_test_accuracy", "early_stop_iteration")  # as `analyze study` compares
# Frankle & Carbin (2019, arXiv 1803.03635v5), Appendix H.2: dense Conv-2's validation accuracy at
# early stop with Adam at learning rate 2e-4, the mean of 3 trials.
PAPER_DENSE_CONV2 = 0.676
# What the paper's text states on Conv-2 (it has no table at 80%, 64% or 51% of the weights).
PAPER_CONV2 = {
    "dense": "67.6% validation accuracy at early stop (Appendix H.2, learning rate 2e-4, mean of 3 trials)",
    "faster": "at best 3.5x faster, at 8.8% of the weights (Section 3)",
    "accuracy": "at or above it while more than 2% remains; at best +3.4 points, at 4.6% (Section 3)",
    "final": "(the paper's metric is accuracy at early stop)",
    "reinit": "reinitialised networks initially keep, or even improve, their accuracy, and learn more "
              "slowly than tickets (Section 3)",
}
EXPORT_REPORT = DATA / "conv2_cifar10_jpeg_4000it_filter" / "export_round3_report.json"
LATENCY = REPO / "benchmarks" / "results" / "export_latency_conv2_cifar10_jpeg_filter.json"


def _runs(sources, pack):
    """({round: IMP record}, {round: reinitialised record}) of an experiment pack."""
    summary = results.read_summary(sources.folder(pack))
    imp = {r["round"]: r for r in summary["rounds"]}
    return imp, {r["round"]: r for r in summary["controls"].get(CONTROL, [])}


def _pct(value):
    return f"{100 * value:.2f}%"


def _points(value):
    return f"{100 * value:+.2f}"


def _signs(values):
    """Which side of zero a list of differences falls on, in words."""
    if all(v > 0 for v in values):
        return "above at every size"
    if all(v < 0 for v in values):
        return "below at every size"
    return "mixed signs"


def _ticket_table(sources, packs, metric, iterations):
    imp, reinit = _runs(sources, packs[0])
    dense = imp[0]
    header = ["round", "remaining", "ticket test acc.", "ticket minus dense (points)", "reinit test acc.",
              "ticket minus reinit (points)"]
    if iterations:
        header += ["ticket early-stop it.", "dense / ticket early stop", "reinit early-stop it."]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for index in sorted(imp):
        record, control = imp[index], reinit.get(index)
        cells = [str(index), _pct(record["remaining_fraction"]), _pct(record[metric]),
                 _points(record[metric] - dense[metric]) if index else "",
                 _pct(control[metric]) if control else "",
                 _points(record[metric] - control[metric]) if control else ""]
        if iterations:
            cells += [str(record["early_stop_iteration"]),
                      f"{dense['early_stop_iteration'] / record['early_stop_iteration']:.1f}x" if index else "",
                      str(control["early_stop_iteration"]) if control else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ticket_es(sources, packs):
    """Test accuracy at early stop per round, ticket against dense and reinitialised, and early stop."""
    return _ticket_table(sources, packs, "early_stop_test_accuracy", iterations=True)


def ticket_final(sources, packs):
    """Test accuracy at the end of training per round, ticket against dense and reinitialised."""
    return _ticket_table(sources, packs, "final_test_accuracy", iterations=False)


def dense_single(sources, packs):
    """The dense network's accuracies at early stop and at the end, against the paper's dense Conv-2."""
    lines = ["| run | early-stop it. | validation acc. @es | minus the paper's 67.6% (points) | "
             "test acc. @es | final test acc. |", "|---|---:|---:|---:|---:|---:|"]
    for pack in packs:
        dense = _runs(sources, pack)[0][0]
        lines.append(f"| `{pack}` | {dense['early_stop_iteration']} | {_pct(dense['early_stop_val_accuracy'])} | "
                     f"{_points(dense['early_stop_val_accuracy'] - PAPER_DENSE_CONV2)} | "
                     f"{_pct(dense['early_stop_test_accuracy'])} | {_pct(dense['final_test_accuracy'])} |")
    return "\n".join(lines)


def _differences(values, sizes):
    return f"{', '.join(_points(v) for v in values)} points at {sizes} ({_signs(values)})"


def conv2_beside(sources, packs):
    """The paper's statements on Conv-2 beside this run's numbers (all descriptive, one seed)."""
    imp, reinit = _runs(sources, packs[0])
    dense, pruned = imp[0], [imp[r] for r in sorted(imp) if r]
    sizes = " / ".join(f"{100 * r['remaining_fraction']:.1f}%" for r in pruned)
    speed = {r["round"]: dense["early_stop_iteration"] / r["early_stop_iteration"] for r in pruned}
    best = imp[max(speed, key=speed.get)]
    es, final = "early_stop_test_accuracy", "final_test_accuracy"
    controls = [reinit[r["round"]] for r in pruned]
    rows = [
        ("the dense network", PAPER_CONV2["dense"],
         f"{_pct(dense['early_stop_val_accuracy'])} validation accuracy at early stop "
         f"({_points(dense['early_stop_val_accuracy'] - PAPER_DENSE_CONV2)} points from the paper's; "
         f"test {_pct(dense[es])})"),
        ("tickets learn faster than the dense network", PAPER_CONV2["faster"],
         f"at best {speed[best['round']]:.1f}x, at {100 * best['remaining_fraction']:.1f}% (early stop "
         f"{best['early_stop_iteration']} vs {dense['early_stop_iteration']}); per round "
         + ", ".join(f"{speed[r['round']]:.1f}x" for r in pruned)),
        ("tickets minus the dense network, at early stop", PAPER_CONV2["accuracy"],
         _differences([r[es] - dense[es] for r in pruned], sizes)),
        ("the same at the end of training (secondary)", PAPER_CONV2["final"],
         _differences([r[final] - dense[final] for r in pruned], sizes)),
        ("random reinitialisation", PAPER_CONV2["reinit"],
         f"reinitialised minus dense at early stop: {_differences([c[es] - dense[es] for c in controls], sizes)}; "
         f"ticket minus reinitialised: {_differences([r[es] - c[es] for r, c in zip(pruned, controls)], sizes)}; "
         "early stop at " + ", ".join(str(c["early_stop_iteration"]) for c in controls)
         + " against the ticket's " + ", ".join(str(r["early_stop_iteration"]) for r in pruned)),
    ]
    lines = ["| | the paper (20,000 it./round, 5 trials) | here (4,000 it./round, 1 seed, JPEG copy; descriptive) |",
             "|---|---|---|"]
    lines += [f"| {what} | {paper} | {here} |" for what, paper, here in rows]
    return "\n".join(lines)


def _units(pack, index, layer, fraction):
    """Units (filters or neurons) a filter-pruned layer keeps: its share of the last dimension."""
    shapes = json.loads((DATA / pack / "mask_shapes.json").read_text())
    return round(fraction * shapes[f"round_{index:02d}|{layer}"][-1])


def filter_beside(sources, packs):
    """The filter-pruned run (first pack) per round beside the unstructured run (second pack)."""
    (filtered, _), (unstructured, _) = _runs(sources, packs[0]), _runs(sources, packs[1])
    layers = ("conv1/kernel", "conv2/kernel", "fc1/kernel", "fc2/kernel")
    lines = ["| round | remaining | units kept (conv1, conv2, fc1, fc2) | early-stop it. | test acc. @es | "
             "final test acc. | unstructured: remaining, early-stop it., test acc. @es | "
             "filter minus unstructured @es |", "|---:|---:|---|---:|---:|---:|---|---:|"]
    for index in sorted(filtered):
        record, other = filtered[index], unstructured[index]
        units = ", ".join(str(_units(packs[0], index, layer, record["layers"][layer]["remaining_fraction"]))
                          for layer in layers)
        lines.append(f"| {index} | {_pct(record['remaining_fraction'])} | {units} | "
                     f"{record['early_stop_iteration']} | {_pct(record['early_stop_test_accuracy'])} | "
                     f"{_pct(record['final_test_accuracy'])} | {_pct(other['remaining_fraction'])}, "
                     f"{other['early_stop_iteration']}, {_pct(other['early_stop_test_accuracy'])} | "
                     f"{_points(record['early_stop_test_accuracy'] - other['early_stop_test_accuracy'])} |")
    dense, pruned = filtered[0], [filtered[r] for r in sorted(filtered) if r]
    sizes = " / ".join(f"{100 * r['remaining_fraction']:.1f}%" for r in pruned)
    es = "early_stop_test_accuracy"
    lines += ["", f"Filter-pruned ticket minus the dense network at early stop: "
              f"{_differences([r[es] - dense[es] for r in pruned], sizes)}; early stop at "
              + ", ".join(str(r["early_stop_iteration"]) for r in pruned)
              + f" against the dense network's {dense['early_stop_iteration']}."]
    keys = ("early_stop_iteration", "early_stop_test_accuracy", "final_test_accuracy", "early_stop_val_loss")
    same = all(filtered[0][k] == unstructured[0][k] for k in keys)
    lines += ["", f"Round 0 of the two runs: {'the same records' if same else 'different records'} "
              f"({', '.join(keys)})."]
    return "\n".join(lines)


def _megabytes(count):
    return f"{count / 1e6:.1f} MB"


def conv2_export(sources, packs):
    """The filter-pruned round 3 exported whole and shrunk: sizes, latency, accuracy, formats."""
    report = json.loads(EXPORT_REPORT.read_text())
    latency = next(iter(json.loads(LATENCY.read_text())["results"].values()))
    names = {"dense": "dense (round 0, trained)", "stripped": "stripped ticket (zeros kept)",
             "shrunk": "shrunk ticket (`--shrink`)"}
    lines = ["| network (round 3 unless dense) | parameters | SavedModel | batch 1 | batch 64 | "
             "speed-up, batch 1 / 64 | test accuracy |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, name in names.items():
        row = latency[key]
        lines.append(f"| {name} | {row['parameters']:,} | {_megabytes(row['saved_model_bytes'])} | "
                     f"{row['batch1_ms']:.2f} ms | {row['batch64_ms']:.2f} ms | "
                     f"{row['batch1_speedup']:.2f}x / {row['batch64_speedup']:.2f}x | {_pct(row['test_accuracy'])} |")
    shrunk = latency["shrunk"]
    lines += ["", f"The shrunk SavedModel is {shrunk['size_ratio']:.2f}x smaller than the stripped one; its "
              f"outputs differ from the stripped ticket's by at most {shrunk['max_abs_diff_to_stripped']:.1e}.", "",
              "| format written by the export | size | test accuracy | predictions unchanged | "
              "largest output difference |", "|---|---:|---:|---:|---:|"]
    for name, entry in report["formats"].items():
        lines.append(f"| `{name}` | {_megabytes(entry['bytes'])} | {_pct(entry['test_accuracy'])} | "
                     f"{100 * entry['argmax_agreement']:.1f}% | {entry['max_abs_diff']:.1e} |")
    units = report["shrink"]["units"]
    conv = sum(units[n][0] for n in ("conv1", "conv2")) / sum(units[n][1] for n in ("conv1", "conv2"))
    dense = sum(units[n][0] for n in ("fc1", "fc2")) / sum(units[n][1] for n in ("fc1", "fc2"))
    lines += ["", f"At {_pct(report['remaining_fraction'])} of the weights the shrunk network keeps "
              f"{100 * conv:.0f}% of the filters, {100 * dense:.0f}% of the dense units and "
              f"{100 * report['shrink']['parameters_after'] / report['shrink']['parameters_before']:.0f}% "
              f"of the parameters ({report['shrink']['parameters_after']:,} of "
              f"{report['shrink']['parameters_before']:,})."]
    return "\n".join(lines)


def taxonomy_gap(sources, packs):
    """Per method (the first pack's IMP first) and size: accuracy minus IMP's and minus the dense
    network's (round 0 of the first pack), in points; and the methods with the same accuracy in
    every round they share (at least one pruned round). Above it, the dense accuracy and the range
    of IMP's early-stop iterations."""
    found = taxonomy.methods([sources.folder(pack) for pack in packs])
    imp, dense = found[0], found[0].cells[0].accuracy
    records = results.read_summary(sources.folder(packs[0]))["rounds"]
    stops = [r["early_stop_iteration"] for r in records]
    lines = [f"The dense network (round 0 of `{packs[0]}`): {_pct(dense)} test accuracy at early stop. "
             f"{imp.label}: early stop at iterations {min(stops):,}-{max(stops):,} over its {len(records)} "
             f"rounds of {max(r['train_steps'] for r in records):,} "
             f"({'every' if all(x < r['train_steps'] for x, r in zip(stops, records)) else 'not every'} "
             "round stopped before its last iteration).", "",
             "| method | " + " | ".join(f"~{size:g}%: minus {imp.label} | minus dense" for size in taxonomy.SIZES)
             + " | same accuracy in every round as |", "|---|" + "---:|---:|" * len(taxonomy.SIZES) + "---|"]
    for method in found:
        cells = []
        for size in taxonomy.SIZES:
            cell, reference = method.at(size), imp.at(size)
            cells += (["-", "-"] if cell is None or reference is None else
                      [_points(cell.accuracy - reference.accuracy), _points(cell.accuracy - dense)])
        twins = [other.label for other in found if other is not method and _same_accuracies(method, other)]
        lines.append(f"| {method.label} | " + " | ".join(cells) + f" | {', '.join(twins) or '-'} |")
    return "\n".join(lines)


def _same_accuracies(method, other):
    shared = set(method.cells) & set(other.cells) - {0}
    return bool(shared) and all(method.cells[r].accuracy == other.cells[r].accuracy for r in shared)


def group_holm(sources, packs):
    """Per study pack, per group-versus-group comparison and field: rounds compared, intervals clear
    of zero (95%, uncorrected) and rounds clear after Holm's correction over the column's rounds."""
    lines = ["| study | comparison | measure | rounds compared | interval clear of zero | after Holm |",
             "|---|---|---|---:|---:|---:|"]
    for pack in packs:
        data = sources.data(pack)
        for axis, position, context, group, reference in statistics.comparisons(data):
            name = f"{axis.label(position)} minus {axis.label(0)}" + (
                f" (at {context})" if context != "all points" else "")
            for field in DIFFERENCE_FIELDS:
                rows = statistics.difference_rows((group, None), (reference, None), field)
                clear = statistics.inference.holm([row.estimate.p for row in rows])
                lines.append(f"| `{pack}` | {name} | {statistics.FIELDS[field]} | {len(rows)} | "
                             f"{sum(1 for row in rows if row.estimate.excludes(0.0))} | {sum(clear)} |")
    return "\n".join(lines)


TABLES = {"ticket_es": ticket_es, "ticket_final": ticket_final, "dense_single": dense_single,
          "conv2_beside": conv2_beside, "filter_beside": filter_beside, "conv2_export": conv2_export, "group_holm": group_holm,
          "taxonomy_gap": taxonomy_gap}
