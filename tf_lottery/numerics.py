"""The numerics identity of this process: what decides the low bits of a training run's numbers.

The same flags give bit-identical numbers only under the same identity: the
CPU model and the instruction-set features the numeric libraries (oneDNN,
Eigen, XLA's CPU backend, NumPy) dispatch on, the versions of TensorFlow,
Keras and NumPy, the thread counts that partition their sums, and the
oneDNN and XLA switches read from the environment. `identity()` returns it
as a JSON-ready dict with a short `key` (a hash of the rest) to compare.
Nothing here imports TensorFlow or changes the environment.
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import sys

# The /proc/cpuinfo flags that oneDNN, Eigen, XLA and NumPy choose kernels by.
ISA_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("tensorflow", "keras", "numpy")
# Environment variables that TensorFlow, its oneDNN and XLA, and OpenMP read for threads and kernels.
ENVIRONMENT = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "XLA_FLAGS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES")
CPUINFO = "/proc/cpuinfo"


def _cpuinfo(path=CPUINFO):
    """(model name, set of flags) of the first processor in /proc/cpuinfo, or (None, None)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except OSError:
        return None, None
    model, features = None, None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and model is None:
            model = value.strip()
        elif name == "flags" and features is None:
            features = set(value.split())
    return model, features


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tf_threads():
    """TensorFlow's intra/inter-op thread settings where a program set them (0: TensorFlow picks)."""
    tf = sys.modules.get("tensorflow")
    threading = getattr(getattr(tf, "config", None), "threading", None)
    if threading is None:
        return {}
    try:
        counts = {"intra_op": threading.get_intra_op_parallelism_threads(),
                  "inter_op": threading.get_inter_op_parallelism_threads()}
    except Exception:  # pylint: disable=broad-except  # a half-imported TensorFlow
        return {}
    return {name: count for name, count in counts.items() if count}


def identity(cpuinfo=CPUINFO):
    """{"cpu", "isa", "packages", "cpus", "threads", "environment", "key"} of this process."""
    model, features = _cpuinfo(cpuinfo)
    values = {
        "cpu": model or platform.processor() or platform.machine(),
        "isa": sorted(f for f in ISA_FEATURES if f in (features or ())),
        "packages": {p: _version(p) for p in PACKAGES},
        "cpus": os.cpu_count(),
        "threads": _tf_threads(),
        "environment": {name: os.environ[name] for name in ENVIRONMENT if name in os.environ},
    }
    return {**values, "key": key(values)}


def key(values):
    """A short stable hash of an identity (its `key` left out)."""
    text = json.dumps({k: v for k, v in values.items() if k != "key"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _describe(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + " ".join(value) + "]"
    return str(value)


def differences(before, after):
    """One line naming what differs between two identities ('cpu A [isa] -> B [isa]; ...'), or ''."""
    parts = []
    if before.get("cpu") != after.get("cpu") or before.get("isa") != after.get("isa"):
        parts.append(f"cpu {before.get('cpu')} {_describe(before.get('isa') or [])} -> "
                     f"{after.get('cpu')} {_describe(after.get('isa') or [])}")
    for name in ("packages", "cpus", "threads", "environment"):
        if before.get(name) != after.get(name):
            parts.append(f"{name} {_describe(before.get(name))} -> {_describe(after.get(name))}")
    return "; ".join(parts)
