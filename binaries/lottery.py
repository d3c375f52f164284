"""Iterative magnitude pruning with reset or rewind, and the paper's controls.

  python -m binaries.lottery --flagfile=configs/quickstart.cfg

--replicates=N runs the study over seeds seed..seed+N-1 (tf_lottery.study, on
a local Ray, several at a time), one seed_<seed> folder each.
"""

from absl import app

from binaries import cli
from binaries import experiment_flags
from tf_lottery import experiment
from tf_lottery import results
from tf_lottery import study


def replicates(config):
    """The replicates as a study; exits with status 1 if some failed."""
    try:  # Ray loads here only: a single run and a bad flag do not wait for it
        from tf_lottery.study import runner
    except ModuleNotFoundError as missing:
        if missing.name != "ray":
            raise
        cli.fail(study.RAY_ADVICE)
    outcome = cli.execute(runner.replicates, config)
    for entry in outcome.finished:
        print(results.format_summary(results.read_summary(outcome.directory(entry))))
        print(f"results: {outcome.directory(entry)}")
    for entry in outcome.failed:
        print(f"failed: {outcome.directory(entry)}: {entry['error']}")
    if outcome.interrupted:
        cli.fail("interrupted; rerun the same command to resume", status=128 + outcome.interrupted)
    if outcome.failed:
        cli.fail(f"{len(outcome.failed)} of {len(outcome.points)} replicates failed", status=1)


def main(argv):
    cli.no_arguments(argv)
    if experiment_flags.FLAGS.model_summary:
        print(cli.execute(experiment.describe_model, experiment_flags.config()))
        return
    prepared = experiment_flags.prepare("imp")  # every check (data, folders) before anything runs
    if len(prepared) > 1:
        replicates(experiment_flags.config())
        return
    summary = cli.execute(experiment.run_imp, prepared[0])
    print(results.format_summary(summary))
    print(f"results: {prepared[0].directory}")


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
