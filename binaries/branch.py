"""Trains the paper's controls on the masks of an existing IMP experiment folder.

  python -m binaries.branch --experiment_dir=experiments/imp_lenet_mnist_init_1234abcd \
      --controls=random_reinit,random_prune
"""

from absl import app
from absl import flags

from binaries import cli
from tf_lottery import experiment
from tf_lottery import results

flags.DEFINE_string("experiment_dir", None, "A folder written by binaries.lottery.")
flags.DEFINE_list("controls", ["random_reinit", "random_prune", "one_shot"],
                  "Controls to train: random_reinit, random_prune, one_shot.")
flags.DEFINE_string("data_dir", None, "Where the data is now, if not where config.json says.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    with cli.usage_errors():
        prepared = experiment.prepare_branch(FLAGS.experiment_dir, FLAGS.controls, FLAGS.data_dir)
    summary = cli.execute(experiment.run_controls, prepared)
    print(results.format_summary(summary))
    print(f"results: {prepared.directory}")


def run_main():
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
