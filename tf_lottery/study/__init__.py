"""Studies: many experiments over a grid of settings, run in parallel on Ray, and their statistics.

  from tf_lottery import study
  outcome = study.run(tfl.ExperimentConfig.from_flat(dataset="mnist_small", rounds=3),
                      ["seed=0,1,2", "prune_scope=layer,global"], "studies/scope", workers=2)
  study.make_report("studies/scope")

  grid.py        --grid entries -> axes -> points (configs and folders), checked; no TF, no Ray
  folder.py      the study folder: study_config.json, study.json (states), what counts as finished
  execution.py   Ray: local or cluster, the shared-storage check, one task per point, retries, signals
  local_ray.py   the local Ray: loopback only, token authentication, no metrics export, a watchdog
  watchdog.py    the process that stops the local Ray when the driver dies (run as a script)
  progress.py    the live progress line
  runner.py      prepare (checks) then execute (Ray); run = both; replicates (--replicates=N)
  statistics.py  groups over the axes, per-round statistics over seeds, differences paired by seed
  inference.py   intervals and tests on per-seed numbers: paired t, log ratios, Welch, Fieller,
                 TOST, Holm
  claims.py      a paper's claims against a study, each judged by the rule of its kind
  report.py      report.md and figures of a study folder (`analyze study`)

Attributes load on first use: `tf_lottery.study.grid` works without Ray installed.
"""

from tf_lottery import lazy

RAY_ADVICE = ("studies run on Ray, which is not installed; install it with "
              "pip install 'ray[default]>=2.59,<3' (or pip install -e . in the repository)")

_EXPORTS = {name: f"tf_lottery.study.{module}" for name, module in (
    ("run", "runner"), ("prepare", "runner"), ("execute", "runner"), ("Outcome", "runner"),
    ("make_report", "report"), ("parse_grid", "grid"), ("plan", "grid"), ("read_study", "folder"))}
_SUBMODULES = ("claims", "execution", "folder", "grid", "inference", "progress", "report", "runner",
               "statistics")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)
__getattr__, __dir__ = lazy.attributes(__name__, _EXPORTS, _SUBMODULES)
