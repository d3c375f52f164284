"""What `import tf_lottery` arranges without importing TensorFlow or Keras itself.

- As soon as Keras is imported, the modules defining the wrappers and the
  trainer's learning-rate schedule are imported too (`SERIALIZABLE`), so that
  LotteryWrapper, the learned-mask wrappers and WarmupPiecewise are registered
  with Keras' serialization and `keras.models.load_model` reads `.keras` files
  holding any of them.
- Unless the user set TF_CPP_MIN_LOG_LEVEL, it is set to 3, which hides
  TensorFlow's C++ log (the "failed call to cuInit" error on a machine without
  a GPU included). Some start-up lines are logged while TensorFlow's libraries
  load, before TensorFlow reads that setting; so the lines in TensorFlow's C++
  log format written during `import tensorflow` are filtered by the same level
  (1 drops INFO, 2 also WARNING, 3 also ERROR), and everything else written to
  stderr meanwhile is passed on when the import ends.

Both act through a `sys.meta_path` finder that wraps the module's loader and
removes itself once the module executes.
"""

import importlib
import importlib.abc
import os
import re
import sys
import tempfile

QUIET_LEVEL = "3"
SERIALIZABLE = ("tf_lottery.wrapper", "tf_lottery.edge_popup", "tf_lottery.supermask",
                "tf_lottery.learning_rates")
_SEVERITIES = b"IWE"
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LOG_LINE = re.compile(rb"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
                       rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) \S+:\d+\] )")


class _Loader(importlib.abc.Loader):
    """Delegates to `loader`; its exec_module runs through the finder's `around(exec_module, module)`."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._finder.around(self._loader.exec_module, module)


class _OnImport(importlib.abc.MetaPathFinder):
    """Finds top-level module `name` with the other finders and wraps its loader.

    It removes itself when the module executes, not when it is found:
    `importlib.util.find_spec` (asking whether a package is installed) finds
    without importing.
    """

    def __init__(self, name, around):
        self.name = name
        self.around = around

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, self)
        return spec


def _register_wrappers():
    for name in SERIALIZABLE:
        importlib.import_module(name)


def _register_after(exec_module, module):
    exec_module(module)
    _register_wrappers()


def _min_log_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _hidden(line, level):
    """Whether TF_CPP_MIN_LOG_LEVEL `level` hides `line`, a line TensorFlow wrote during its import."""
    if line.startswith(_ABSL_NOTICE):
        return level >= 2
    match = _LOG_LINE.match(line)
    if not match:
        return False
    severity = match.group(1) or match.group(2)
    return severity in _SEVERITIES and _SEVERITIES.index(severity) < level


def _drop_start_up_lines(exec_module, module):
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        exec_module(module)
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            exec_module(module)
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            level = _min_log_level()
            kept = b"".join(line for line in captured.read().splitlines(keepends=True)
                            if not _hidden(line, level))
            while kept:
                kept = kept[os.write(2, kept):]


def _hook(name, around):
    if not any(isinstance(f, _OnImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _OnImport(name, around))


def install():
    """Registers the wrappers when Keras loads and quiets TensorFlow's start-up (see the module doc)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    if "tensorflow" not in sys.modules and _min_log_level() > 0:
        _hook("tensorflow", _drop_start_up_lines)
    if "keras" in sys.modules:
        _register_wrappers()
    else:
        _hook("keras", _register_after)
