"""Iterative magnitude pruning with reset or rewind, and the paper's controls.

  python -m binaries.lottery --flagfile=configs/quickstart.cfg
"""

from absl import app

from binaries import cli
from binaries import experiment_flags
from tf_lottery import experiment
from tf_lottery import results


def main(argv):
    cli.no_arguments(argv)
    if experiment_flags.FLAGS.model_summary:
        print(cli.execute(experiment.describe_model, experiment_flags.config()))
        return
    for prepared in experiment_flags.prepare("imp"):
        summary = cli.execute(experiment.run_imp, prepared)
        print(results.format_summary(summary))
        print(f"results: {prepared.directory}")


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
