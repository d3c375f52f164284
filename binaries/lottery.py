"""Iterative magnitude pruning with reset or rewind.

  python -m binaries.lottery --flagfile=configs/quickstart.cfg
"""

from absl import app

from binaries import experiment_flags
from tf_lottery import experiment
from tf_lottery import results


def main(argv):
    if len(argv) > 1:
        experiment_flags.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    prepared = experiment_flags.prepare("imp")
    records = experiment.run_imp(prepared)
    print(results.format_table(records))
    print(f"results: {prepared.directory}")


def run_main():
    app.run(main, flags_parser=experiment_flags.parse_flags)


if __name__ == "__main__":
    run_main()
