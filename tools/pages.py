"""Regenerates the numbers of the published pages from the packed results, or checks them.

  python tools/pages.py check    # exit 1, naming each generated block that differs from the packs
  python tools/pages.py write    # rewrite the blocks (and copy the study figures) from the packs
  python tools/pages.py write docs/results/stability.md   # those pages only

A page marks each part the code writes; prose lives outside the marks:

  <!-- generated: study=lenet300_mnist_15rounds claims=lth_lenet section="Group: all points" -->
  ...
  <!-- end generated -->

The source is one of
  study=PACK [claims=SET] section=TITLE        a section of `analyze study`'s report.md of the pack
  experiment=PACK section=TITLE                a section of `analyze plots`' report.md of the pack
  taxonomy=PACK,PACK,... [sizes=21.1,5.5,1.4]  the table of `analyze taxonomy` over those packs
  table=NAME [study=PACK ...] [experiment=PACK ...]
                                               a table of this module's TABLES (below; the
                                               tables of tools/page_tables.py,
                                               tools/benchmark_tables.py and
                                               tools/stability_tables.py too)
where PACK is a folder under docs/results/data/ (unpacked with tools/pack_results.py) and a
section is everything under its heading down to the next heading of the same or a higher level.
A line `<!-- figures: study=PACK to=FOLDER -->` (no end mark) makes `write` copy the pack's study
figures (PNG) into docs/results/FOLDER; `<!-- figures: stability=PACK to=FOLDER -->` draws a
stability pack's figures there (tools/stability_tables.py). The packs are unpacked into a
temporary folder, and each report is made once.
"""

import contextlib
import pathlib
import re
import shlex
import shutil
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import benchmark_tables  # noqa: E402
import pack_results  # noqa: E402
import page_tables  # noqa: E402
import stability_tables  # noqa: E402

from tf_lottery import report as experiment_report  # noqa: E402
from tf_lottery import taxonomy  # noqa: E402
from tf_lottery.study import claims as claims_lib  # noqa: E402
from tf_lottery.study import report as study_report  # noqa: E402
from tf_lottery.study import statistics  # noqa: E402

DATA = REPO / "docs" / "results" / "data"
PAGES = ("README.md", "docs/studies.md", "docs/taxonomy.md", "docs/results/lenet300_mnist.md",
         "docs/results/lenet300_fashion_mnist.md", "docs/results/conv2_cifar10_jpeg.md", "docs/export.md",
         "docs/results/stability.md")
_BLOCK = re.compile(r"(<!-- generated: (?P<spec>.*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
_FIGURES = re.compile(r"<!-- figures: (?P<spec>.*?) -->")
ACCURACY = "early_stop_test_accuracy"
# The dense LeNet-300-100's test accuracy at early stop in Frankle & Carbin (2019), read off Figure 3
# (about 98.0%); the paper gives no table of it.
PAPER_DENSE_LENET = 0.980


def section(text, title):
    """The lines under the heading `title` of a markdown text, down to the next heading of the same
    or a higher level (blank lines at both ends dropped)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(#+) (.*)$", line)
        if match and match.group(2) == title:
            level, body = len(match.group(1)), []
            for later in lines[i + 1:]:
                heading = re.match(r"(#+) ", later)
                if heading and len(heading.group(1)) <= level:
                    break
                body.append(later)
            return "\n".join(body).strip("\n")
    raise KeyError(f"no section {title!r}")


class Sources:
    """The packs unpacked into a temporary folder, and their reports, each made once."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self._reports = {}

    def folder(self, pack):
        out = self.root / pack.replace("/", "__")
        if not out.exists():
            if not (DATA / pack).is_dir():
                raise KeyError(f"no pack docs/results/data/{pack}")
            with contextlib.redirect_stdout(None):
                (pack_results.unpack_study if pack_results._is_study(DATA / pack) else
                 pack_results.unpack)(DATA / pack, out, masks=False)
        return out

    def study(self, pack, claims=None, figures=False):
        key = ("study", pack, claims, figures)
        if key not in self._reports:
            data = statistics.load(self.folder(pack))
            plots = study_report.write_figures(data) if figures else []
            self._reports[key] = study_report.write_report(data, plots, claims).read_text()
        return self._reports[key]

    def experiment(self, pack):
        key = ("experiment", pack)
        if key not in self._reports:
            self._reports[key] = experiment_report.write_report([self.folder(pack)], []).read_text()
        return self._reports[key]

    def data(self, pack):
        return statistics.load(self.folder(pack))


def _mean_ci(row, scale=100, digits=2):
    if row.ci_low is None:
        return f"{scale * row.mean:.{digits}f}"
    return f"{scale * row.mean:.{digits}f} [{scale * row.ci_low:.{digits}f}, {scale * row.ci_high:.{digits}f}]"


def _difference(estimate, scale=100, digits=2, sign=True):
    fmt = f"{{:{'+' if sign else ''},.{digits}f}}"
    if not estimate.has_interval:
        return fmt.format(scale * estimate.value)
    return (f"{fmt.format(scale * estimate.value)} [{fmt.format(scale * estimate.low)}, "
            f"{fmt.format(scale * estimate.high)}]")


def verdicts_table(sources, packs):
    """Per study pack: its seeds, and how many of the claim set's claims got each verdict."""
    lines = ["| study | group | seeds | " + " | ".join(claims_lib.VERDICTS) + " |",
             "|---|---|---:|" + "---:|" * len(claims_lib.VERDICTS)]
    for pack in packs:
        for group in sources.data(pack).groups:
            counts = claims_lib.verdict_counts(claims_lib.check(group, "lth_lenet"))
            lines.append(f"| `{pack}` | {group.label} | {len(group.runs)} | "
                         + " | ".join(str(counts.get(v, 0)) for v in claims_lib.VERDICTS) + " |")
    return "\n".join(lines)


def _group_by_label(data, label):
    return next(g for g in data.groups if g.label == label)


def beside_table(sources, packs):
    """Ticket minus its reinitialised mask at the sizes every pack has, accuracy (points) and early
    stop (iterations), paired by seed, one column pair per pack."""
    columns = []
    for pack in packs:
        group = sources.data(pack).groups[0]
        rows = {"acc": statistics.difference_rows((group, None), (group, "random_reinit"), ACCURACY),
                "it": statistics.difference_rows((group, None), (group, "random_reinit"), "early_stop_iteration")}
        columns.append((pack, len(group.runs), {round(row.remaining, 1): (row, it) for row, it in
                                                zip(rows["acc"], rows["it"])}))
    sizes = sorted(set.intersection(*(set(c[2]) for c in columns)), reverse=True)
    header = "| remaining | " + " | ".join(f"`{p}` ({n} seeds): accuracy, points | early stop, iterations"
                                          for p, n, _ in columns) + " |"
    lines = [header, "|---:|" + "---:|---:|" * len(columns)]
    for size in sizes:
        cells = []
        for _, _, by_size in columns:
            accuracy, iterations = by_size[size]
            cells += [_difference(accuracy.estimate), _difference(iterations.estimate, scale=1, digits=0)]
        lines.append(f"| {size:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baseline_table(sources, packs):
    """The dense network's test accuracy at early stop (round 0) and the ticket's at 21.1%, against
    the paper's dense accuracy, per pack and group (e.g. per input scaling)."""
    lines = ["| study | group | seeds | dense, % [95% CI] | dense minus the paper's ~98.0%, points | "
             "ticket at ~21.1%, % [95% CI] |", "|---|---|---:|---:|---:|---:|"]
    for pack in packs:
        for group in sources.data(pack).groups:
            rows = {row.round: row for row in statistics.round_stats(group, ACCURACY)}
            dense = rows[0]
            ticket = min(rows.values(), key=lambda row: abs(row.remaining - 21.1))
            gap = statistics.inference.mean([v - PAPER_DENSE_LENET for v in statistics.inference.seed_means(
                statistics.side_values((group, None), 0, ACCURACY)).values()])
            lines.append(f"| `{pack}` | {group.label} | {len(group.runs)} | {_mean_ci(dense)} | "
                         f"{_difference(gap)} | {_mean_ci(ticket)} ({ticket.remaining:.1f}%) |")
    return "\n".join(lines)


def reinit_wins_table(sources, packs):
    """Per pack: how many rounds were compared (ticket against its reinitialised mask, accuracy) and how
    many stay clear of zero on each side, before and after Holm's correction."""
    lines = ["| study | rounds compared | ticket ahead, interval clear of zero | after Holm | "
             "ticket behind, clear of zero |", "|---|---:|---:|---:|---:|"]
    for pack in packs:
        group = sources.data(pack).groups[0]
        rows = statistics.difference_rows((group, None), (group, "random_reinit"), ACCURACY)
        clear = statistics.inference.holm([row.estimate.p for row in rows])
        ahead = [r for r in rows if r.estimate.excludes(0.0) and r.estimate.value > 0]
        behind = [r for r in rows if r.estimate.excludes(0.0) and r.estimate.value < 0]
        holm_ahead = sum(1 for r, c in zip(rows, clear) if c and r.estimate.value > 0)
        lines.append(f"| `{pack}` | {len(rows)} | {len(ahead)} | {holm_ahead} | {len(behind)} |")
    return "\n".join(lines)


TABLES = {"verdicts": verdicts_table, "beside": beside_table, "baseline": baseline_table,
          "reinit_wins": reinit_wins_table, **page_tables.TABLES, **benchmark_tables.TABLES,
          **stability_tables.TABLES}


def _parse(spec):
    """{key: [values]} of a block's spec (a key may be given several times)."""
    found = {}
    for token in shlex.split(spec):
        key, _, value = token.partition("=")
        found.setdefault(key, []).append(value)
    return found


def render(spec, sources):
    """The markdown a block's spec stands for."""
    args = _parse(spec)
    one = {key: values[0] for key, values in args.items()}
    if "table" in one:
        return TABLES[one["table"]](sources, args.get("study", []) + args.get("experiment", []))
    if "taxonomy" in one:
        sizes = tuple(float(s) for s in one.get("sizes", "21.1,5.5,1.4").split(","))
        found = taxonomy.methods([sources.folder(p) for p in one["taxonomy"].split(",")])
        return taxonomy.table(found, sizes)
    if "study" in one:
        return section(sources.study(one["study"], one.get("claims")), one["section"])
    if "experiment" in one:
        return section(sources.experiment(one["experiment"]), one["section"])
    raise KeyError(f"a generated block needs study=, experiment=, taxonomy= or table=: {spec}")


def regenerate(text, sources):
    """(text with every block rewritten, [specs of the blocks that changed])."""
    changed = []

    def replace(match):
        body = render(match.group("spec"), sources) + "\n"
        if body != match.group("body"):
            changed.append(match.group("spec"))
        return match.group(1) + body + match.group(4)

    return _BLOCK.sub(replace, text), changed


def copy_figures(text, sources):
    for match in _FIGURES.finditer(text):
        args = {key: values[0] for key, values in _parse(match.group("spec")).items()}
        if "stability" in args:
            stability_tables.write_figures(sources, args["stability"], REPO / "docs" / "results" / args["to"])
            continue
        sources.study(args["study"], args.get("claims"), figures=True)
        target = REPO / "docs" / "results" / args["to"]
        target.mkdir(parents=True, exist_ok=True)
        for png in sorted((sources.folder(args["study"]) / "plots").glob("*.png")):
            shutil.copyfile(png, target / png.name)


def run(mode, pages=PAGES):
    """Checks or writes every page; returns {page: [specs of the blocks that differ]}."""
    differing = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = Sources(tmp)
        for page in pages:
            path = REPO / page
            text = path.read_text()
            new, changed = regenerate(text, sources)
            if changed:
                differing[page] = changed
            if mode == "write":
                if new != text:
                    path.write_text(new)
                copy_figures(new, sources)
    return differing


def main(argv):
    unknown = [page for page in argv[2:] if page not in PAGES]
    if len(argv) < 2 or argv[1] not in ("check", "write") or unknown:
        print(__doc__.strip().splitlines()[0], "\nusage: python tools/pages.py check|write [PAGE ...]"
              + (f"\nnot a page of PAGES: {', '.join(unknown)}" if unknown else ""), file=sys.stderr)
        return 2
    np.seterr(all="ignore")
    differing = run(argv[1], tuple(argv[2:]) or PAGES)
    for page, specs in differing.items():
        for spec in specs:
            print(f"{page}: {'rewrote' if argv[1] == 'write' else 'differs'}: {spec}")
    return 1 if differing and argv[1] == "check" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
