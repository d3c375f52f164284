"""What every binary shares: one-line errors with exit status 2 (bad input) or 1 (failed run)."""

import contextlib
import pathlib
import sys

from absl import flags

from tf_lottery import results
from tf_lottery.settings import ConfigError
from tf_lottery.data import DataError


def fail(message, status=2):
    """Prints a one-line error and exits (status 2: bad input; 1: the run failed)."""
    print(f"{pathlib.Path(sys.argv[0]).stem}: error: {message}", file=sys.stderr)
    sys.exit(status)


def parse_flags(argv):
    """absl flags parser that turns a bad flag into a one-line error and exit status 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])


@contextlib.contextmanager
def usage_errors():
    """Turns ConfigError and DataError into a one-line error naming the flag or file, exit status 2."""
    try:
        yield
    except ConfigError as error:
        fail(f"--{error.field}: {error.message}")
    except DataError as error:
        fail(str(error))


def execute(function, *args):
    """function(*args), with late usage errors (exit 2) and failed rounds or writes (exit 1) as one line.

    A binary's work starts here: what it does before (parsing and every check of its flags) writes
    nothing, and tests/flag_fuzz.py runs it for every bad flag value with this call stopped.
    """
    with usage_errors():
        try:
            return function(*args)
        except (results.RoundFailed, OSError, FileNotFoundError) as error:
            fail(str(error), status=1)


def no_arguments(argv):
    """Refuses positional arguments: every input is a flag."""
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
