"""analyze taxonomy: every method of some folders at a few sizes, with what finding each ticket cost."""

from tf_lottery import atomic, controls, results, taxonomy
from tf_lottery.config import ExperimentConfig
from tf_lottery.results import analyses

from conftest import run_binary


def _record(r, accuracy, final=None, steps=1000, seconds=10.0):
    return {"round": r, "remaining_fraction": 0.8 ** r, "early_stop_iteration": 500,
            "early_stop_test_accuracy": accuracy, "final_test_accuracy": final or accuracy,
            "train_steps": steps, "wall_seconds": seconds}


def _folder(path, reset, controls=None):
    config = ExperimentConfig.from_flat(dataset="mnist_small", rounds=3, train_steps=1000, reset=reset,
                                        rewind_step=0 if reset == "init" else 100)
    results.write_config(path, config)
    steps = 1000 if reset == "init" else 900
    results.update_summary(path, [_record(r, 0.90 + 0.01 * r, steps=steps, seconds=10.0 + r) for r in range(4)])
    for name, records in (controls or {}).items():
        results.update_summary(path, records, control=name)
    return path


def test_the_table_gives_each_method_its_accuracy_and_cost(tmp_path):
    first = _folder(tmp_path / "init", "init", {
        "one_shot": [_record(3, 0.85)],
        "snip": [_record(3, 0.80)],
        "gmp": [_record(3, 0.70, final=0.88, steps=1000, seconds=12.5)],
        "random_reinit": [_record(r, 0.80) for r in (1, 2, 3)]})
    atomic.write_json(results.search_path(results.round_dir(first, 3, "snip")),
                      {"find_iterations": 0, "find_seconds": 0.4, "scored_batches": 2})
    second = _folder(tmp_path / "lr", "lr_rewind")
    found = {m.label: m for m in taxonomy.methods([first, second])}
    assert list(found) == ["IMP, reset to theta_0", "one-shot magnitude", "SNIP", "gradual magnitude pruning",
                           "IMP mask, reinitialised", "learning-rate rewinding (from iteration 100)"]
    at = {label: m.at(51.2) for label, m in found.items()}
    assert (at["IMP, reset to theta_0"].find_iterations, at["IMP, reset to theta_0"].find_seconds) == (3000, 33.0)
    assert at["learning-rate rewinding (from iteration 100)"].find_iterations == 2700
    assert (at["one-shot magnitude"].find_iterations, at["one-shot magnitude"].find_seconds) == (1000, 10.0)
    assert (at["SNIP"].find_iterations, at["SNIP"].find_seconds) == (0, 0.4)
    assert at["gradual magnitude pruning"].accuracy == 0.88  # its final accuracy, at its final size
    assert at["IMP mask, reinitialised"].find_iterations == 3000
    assert found["SNIP"].at(21.1) is None  # no round near 21%
    text = taxonomy.table(list(found.values()), sizes=(51.2, 21.1))
    assert "| SNIP | 80.00% (51.2%) | 0 | 0 | - | - | - |" in text

    run = run_binary("analyze", "taxonomy", f"--experiment_dir={first}", f"--experiment_dir={second}",
                     "--sizes=80,51.2")
    assert run.returncode == 0, run.stderr
    assert analyses.taxonomy_path(first).read_text().startswith("# Methods at 80%, 51.2% of the weights")
    assert (first / "plots" / "taxonomy_accuracy.png").is_file()
    bad = run_binary("analyze", "taxonomy", f"--experiment_dir={first}", "--sizes=0,abc")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "--sizes: must be percentages like 21.1,5.5, got 0,abc")


def test_every_control_names_itself_and_what_finding_its_mask_costs():
    kinds = (controls.FINDS_FREE, controls.FINDS_BY_IMP, controls.FINDS_BY_ROUND_0,
             controls.FINDS_BY_SEARCH, controls.FINDS_BY_TRAINING)
    labels = {}
    for name in controls.CONTROLS.names():
        control = controls.CONTROLS.get(name)
        assert control.label, f"{name} has no label for the taxonomy table"
        assert control.finds in kinds, f"{name}: finds={control.finds!r}"
        labels.setdefault(control.label, name)
        assert labels[control.label] == name, f"{name} and {labels[control.label]} share a label"
