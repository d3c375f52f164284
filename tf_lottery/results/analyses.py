"""The files the analyses of binaries.analyze write under an experiment's analysis/ folder.

  analysis/lmc_round_XX.json                 linear mode connectivity of round XX
  analysis/rewind_search_round_XX.json       the rewind-point search on round XX's mask
  analysis/rewind_points/iteration_KKKKKK.npz  cached weights of round 0 at iteration K
  analysis/taxonomy.md                       every method of some folders at a few sizes
  analysis/stability_round_XX.json           stability to pruning and to data order of round XX's mask
  analysis/stability/dense/kKKKKKK/data_seed_S/        the full network trained from theta_K
  analysis/stability/round_XX/MASK/kKKKKKK/data_seed_S/  a subnetwork (MASK: imp, random_prune, ...)
                                             trained from theta_K; each a resumable run (ckpt/ while
                                             it trains), finished when its metrics.json exists, with
                                             state.npz (its trained weights) beside it
  analysis/stability/round_XX/MASK/kKKKKKK/lmc.json    the line between the two data orders' copies
  analysis/stability_report.md               analyze stability_report: the table over seeds and claims

Nothing here imports TensorFlow.
"""

from tf_lottery import results


def read(path):
    """One analysis record (a JSON object); DamagedFile naming it if it cannot be read."""
    return results.read_json(path, "delete it and run the analysis that wrote it again")


def lmc_path(experiment_dir, round_index):
    """The JSON record of the lmc study of one round."""
    return results.analysis_dir(experiment_dir) / f"lmc_round_{round_index:02d}.json"


def rewind_search_path(experiment_dir, round_index):
    """The JSON record of the rewind-point search on one round's mask."""
    return results.analysis_dir(experiment_dir) / f"rewind_search_round_{round_index:02d}.json"


def rewind_point_path(experiment_dir, iteration):
    """The cached dense weights of round 0 at `iteration`."""
    return results.analysis_dir(experiment_dir) / "rewind_points" / f"iteration_{iteration:06d}.npz"


def lmc_paths(experiment_dir):
    """The lmc records of an experiment folder, by round."""
    return sorted(results.analysis_dir(experiment_dir).glob("lmc_round_*.json"))


def rewind_search_paths(experiment_dir):
    """The rewind-point search records of an experiment folder, by round."""
    return sorted(results.analysis_dir(experiment_dir).glob("rewind_search_round_*.json"))


def taxonomy_path(experiment_dir):
    """The table of `analyze taxonomy` (written into the first folder given)."""
    return results.analysis_dir(experiment_dir) / "taxonomy.md"


STATE = "state.npz"
DENSE = "dense"


def stability_path(experiment_dir, round_index):
    """The JSON record of the stability analysis of one round's mask."""
    return results.analysis_dir(experiment_dir) / f"stability_round_{round_index:02d}.json"


def stability_paths(experiment_dir):
    """The stability records of an experiment folder, by round."""
    return sorted(results.analysis_dir(experiment_dir).glob("stability_round_*.json"))


def stability_run_dir(experiment_dir, round_index, mask, iteration, data_seed):
    """The folder of one training of the stability analysis: the full network (`round_index` None,
    `mask` 'dense') or round `round_index`'s subnetwork under `mask`, from theta_`iteration`."""
    base = results.analysis_dir(experiment_dir) / "stability"
    base = base / DENSE if round_index is None else base / f"round_{round_index:02d}" / mask
    return base / f"k{iteration:06d}" / f"data_seed_{data_seed}"


def stability_lmc_path(experiment_dir, round_index, mask, iteration):
    """The cached linear mode connectivity of the two data orders' copies of one subnetwork."""
    return stability_run_dir(experiment_dir, round_index, mask, iteration, 0).parent / "lmc.json"


def state_path(run_dir):
    """The trained weights of a finished stability training (every variable, masked ones times masks)."""
    return run_dir / STATE


def stability_report_path(experiment_dir):
    """The table over seeds of `analyze stability_report` (written into the first folder given)."""
    return results.analysis_dir(experiment_dir) / "stability_report.md"
