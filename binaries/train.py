"""Dense training of one zoo model, with the same model, data, training and folder flags as lottery.

  python -m binaries.train --dataset=mnist_small --validation_size=1000 --train_steps=2000
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
    for prepared in experiment_flags.prepare("train"):
        record = cli.execute(experiment.run_training, prepared)
        print(results.format_table([record]))
        print(f"results: {prepared.directory}")


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
