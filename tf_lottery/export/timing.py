"""Latency of TFLite interpreters measured side by side: interleaved samples, medians, paired ratios.

Each round times every candidate once, in an order that rotates from round to
round, so that a burst of other work on a shared machine falls on all of them;
a sample is enough invocations to last `sample_seconds`. Every sample is taken
on two clocks: the wall clock, and the CPU time of the calling thread, which
is where TFLite runs an interpreter of one thread. On a machine busy with other
work the wall clock also counts the time the thread waited for a core; the
thread's CPU time does not, so it is what an interpreter of one thread is
compared by (`clock="cpu"`). The result per candidate is the median (and the
minimum) over rounds in microseconds per invocation, and `ratios` compares
candidates round by round.
"""

import statistics
import time

import numpy as np

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def ready(interpreter, x):
    """`interpreter` with its input resized to `x`, allocated, fed `x` and invoked once (warm-up)."""
    (detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interpreter.invoke()
    return interpreter


def _sample(interpreter, calls):
    """{clock: microseconds per invocation} over `calls` invocations."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        interpreter.invoke()
    return {"wall": (time.perf_counter() - wall) / calls * 1e6, "cpu": (time.thread_time() - cpu) / calls * 1e6}


def calls_for(interpreter, sample_seconds):
    """How many invocations of a ready `interpreter` last about `sample_seconds`."""
    calls, elapsed = 1, 0.0
    while elapsed < sample_seconds / 10 and calls < 1 << 20:
        calls *= 2
        elapsed = _sample(interpreter, calls)["wall"] * calls / 1e6
    return max(1, int(calls * sample_seconds / max(elapsed, 1e-9)))


def measure(interpreters, x, rounds=7, sample_seconds=0.01, clock="wall"):
    """{name: {"median_us", "min_us", "samples_us", "calls", "clock", "wall"/"cpu" medians}} of ready-made
    interpreters on input `x`; median_us, min_us and samples_us are on `clock`."""
    ready_ones = {name: ready(interpreter, x) for name, interpreter in interpreters.items()}
    calls = {name: calls_for(interpreter, sample_seconds) for name, interpreter in ready_ones.items()}
    samples = {name: [] for name in ready_ones}
    names = list(ready_ones)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_sample(ready_ones[name], calls[name]))
    result = {}
    for name, values in samples.items():
        chosen = [v[clock] for v in values]
        result[name] = {"median_us": statistics.median(chosen), "min_us": min(chosen),
                        "samples_us": [round(v, 3) for v in chosen], "calls": calls[name], "clock": clock,
                        **{f"{c}_median_us": statistics.median(v[c] for v in values) for c in CLOCKS}}
    return result


def ratios(measured, base):
    """{name: median over rounds of (its sample / base's sample of the same round)}: the time of each
    candidate against `base`'s, paired by round, so that load changing between rounds cancels."""
    reference = measured[base]["samples_us"]
    return {name: statistics.median(s / r for s, r in zip(result["samples_us"], reference))
            for name, result in measured.items()}


def inputs(interpreter, batch, seed=0):
    """Standard-normal float32 inputs of the interpreter's input shape at `batch` examples."""
    (detail,) = interpreter.get_input_details()
    shape = [batch, *[int(d) for d in detail["shape"][1:]]]
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)
