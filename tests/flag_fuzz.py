"""Runs one binary's check stage in-process over bad values of each of its flags (see test_flag_fuzz.py).

  python tests/flag_fuzz.py BINARY < spec.json > outcomes.json

The spec gives the base command lines (per command for analyze), the
sandbox folder every case runs in, and either `cases` [command, flag, value]
(and a list of further flags) to try or nothing, to try every flag of the
binary with every bad value of its type. A case is the binary's `main` with `cli.execute` (the call that starts
the work) replaced by one that stops: what happens before it is the check
stage. Each outcome is one of
  error       exit status 2 with one line on stderr (the line is returned)
  accepted    the checks passed and the work would have started
  traceback   any other exception (the traceback is returned)
  hang        still running after CASE_SECONDS
  exit N      another exit status
and `wrote` lists whatever the case left in the sandbox (it must write nothing).
Data loads are cached, so cases cost milliseconds, not a reading of the data.
"""

import contextlib
import functools
import importlib
import io
import json
import os
import pathlib
import signal
import sys
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from absl import flags  # noqa: E402

NUMBERS = ("0", "-1", "nan", "inf", "1e30", str(10**30))
ABSL_MODULES = ("absl.", "tensorflow", "keras")  # flags of absl itself are absl's to check


CASE_SECONDS = 10  # a check stage that takes longer hangs (a huge count looped over)


class Ran(Exception):
    """The work started: the checks let the case through."""


class Hang(Exception):
    """The case ran past CASE_SECONDS."""


def _hang(signum, frame):
    raise Hang()


def _refuse_work(*args, **kwargs):
    raise Ran()


def bad_values(flag, sandbox):
    """The bad values of a flag's type: numbers for every flag, and paths and '' for text flags."""
    paths = ("", str(sandbox / "a_file"), str(sandbox / "missing" / "child"), "/etc/passwd/x", "/proc/x")
    kind = flag.flag_type()
    if kind == "bool":
        return ()
    if kind in ("int", "float"):
        return NUMBERS
    return NUMBERS + paths


def binary_flags(module):
    """{name: Flag} of every flag the binary's modules define (not absl's own), aliases left out."""
    found = {}
    for name, defined in flags.FLAGS.flags_by_module_dict().items():
        if name.startswith(ABSL_MODULES) or name in ("__main__",):
            continue
        for flag in defined:
            if flag.name in flags.FLAGS and not isinstance(flag, flags.FlagHolder):
                found.setdefault(flag.name, flag)
    aliases = {name for name, flag in found.items() if type(flag).__name__ == "_FlagAlias"}
    return {name: found[name] for name in sorted(found) if name not in aliases}


def _tree(sandbox):
    return {str(p.relative_to(sandbox)) for p in sandbox.rglob("*")}


def run_case(module, argv, sandbox):
    """(outcome, detail, wrote) of the binary's main on `argv` with the work refused."""
    from binaries import cli
    before = _tree(sandbox)
    flags.FLAGS.unparse_flags()
    err = io.StringIO()
    signal.signal(signal.SIGALRM, _hang)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            module.main(cli.parse_flags(argv))
        outcome, detail = "accepted", ""
    except Ran:
        outcome, detail = "accepted", ""
    except Hang:
        outcome, detail = "hang", f"still running after {CASE_SECONDS} s"
    except SystemExit as exit:
        lines = err.getvalue().strip().splitlines()
        if exit.code == 2 and len(lines) == 1:
            outcome, detail = "error", lines[0]
        else:
            outcome, detail = f"exit {exit.code}", err.getvalue()
    except BaseException:  # noqa: BLE001 - every other exception is what the test looks for
        outcome, detail = "traceback", traceback.format_exc()
    finally:
        signal.alarm(0)
    return outcome, detail, sorted(_tree(sandbox) - before)


def _arg_name(arg):
    return arg[2:].split("=")[0]


def main():
    binary = sys.argv[1]
    spec = json.loads(sys.stdin.read())
    sandbox = pathlib.Path(spec["sandbox"])
    os.chdir(sandbox)
    (sandbox / "a_file").write_text("not what any flag wants\n")
    from tf_lottery import data
    data.load = functools.lru_cache(maxsize=None)(data.load)  # the cases differ in flags, not data
    module = importlib.import_module(f"binaries.{binary}")
    from binaries import cli
    cli.execute = _refuse_work
    program = str(REPO / "binaries" / f"{binary}.py")
    sys.argv[0] = program
    names = binary_flags(module)
    commands = spec["commands"]  # {command or "": base args}
    cases = spec.get("cases") or [(command, name, value) for command in commands for name in names
                                  for value in bad_values(names[name], sandbox)]
    outcomes = []
    for command, name, value, *extra in cases:
        extra = extra[0] if extra else []  # more flags of the case (--structure=block for --block_shape)
        given = {name, *map(_arg_name, extra)}
        base = [a for a in commands[command] if _arg_name(a) not in given]
        argv = [program, *([command] if command else []), *base, *extra, f"--{name}={value}"]
        start = time.perf_counter()
        outcome, detail, wrote = run_case(module, argv, sandbox)
        outcomes.append({"command": command, "flag": name, "value": value, "outcome": outcome,
                         "detail": detail, "wrote": wrote, "seconds": time.perf_counter() - start})
        for path in wrote:  # leave the sandbox as it was for the next case
            target = sandbox / path
            if target.is_file():
                target.unlink()
        for path in sorted(wrote, reverse=True):
            target = sandbox / path
            if target.is_dir():
                target.rmdir()
    skipped = sorted(name for name in names if not bad_values(names[name], sandbox))
    json.dump({"outcomes": outcomes, "flags": sorted(names), "skipped": skipped, "sandbox": str(sandbox)},
              sys.stdout)


if __name__ == "__main__":
    main()
