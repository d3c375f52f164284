"""The files the analyses of binaries.analyze write under an experiment's analysis/ folder.

  analysis/lmc_round_XX.json                 linear mode connectivity of round XX
  analysis/rewind_search_round_XX.json       the rewind-point search on round XX's mask
  analysis/rewind_points/iteration_KKKKKK.npz  cached weights of round 0 at iteration K
  analysis/taxonomy.md                       every method of some folders at a few sizes

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
