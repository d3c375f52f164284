"""absl flags, command lines and the docs' flag table, generated from the settings' fields.

Nothing here imports TensorFlow.
"""

import shlex

from absl import flags

from tf_lottery import config
from tf_lottery import settings

FLAGS = flags.FLAGS


def _fields():
    """(group name, settings class, field) for every flag, in --help order."""
    return [(group, cls, field) for group, cls in config.GROUPS.items()
            for field in settings.flag_fields(cls)]


def _help(field):
    text = field.metadata["help"]
    choices = settings.describe_choices(field)
    return f"{text} Choices: {choices}." if choices else text


def _default_text(field):
    default = field.default
    if default is None or isinstance(default, bool):
        return default
    return settings.KINDS[field.metadata["kind"]].text(default)


def define_experiment_flags(flag_values=FLAGS):
    """Defines one absl flag per setting (skipping flags already defined, e.g. by a test)."""
    for _, _, field in _fields():
        name = settings.flag_name(field)
        if name in flag_values:
            continue
        define = getattr(flags, "DEFINE_" + settings.KINDS[field.metadata["kind"]].define)
        define(name, _default_text(field), _help(field), flag_values=flag_values)


def flat_values(flag_values=FLAGS):
    """{flat name: flag value} for every setting flag (values are parsed by the config)."""
    return {settings.flag_name(f): flag_values[settings.flag_name(f)].value for _, _, f in _fields()}


def config_from_flags(flag_values=FLAGS):
    """The ExperimentConfig that the parsed flags describe (checked)."""
    return config.ExperimentConfig.from_flat(flat_values(flag_values))


def _flag_text(name, kind, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    return f"--{name}={settings.KINDS[kind].text(value)}"


def command_line(experiment_config, program="binaries.lottery", **overrides):
    """The command that reruns `experiment_config` (with flat `overrides`): every non-default setting."""
    values = experiment_config.replace(**overrides).flat() if overrides else experiment_config.flat()
    defaults = config.ExperimentConfig().flat()
    args = ["python", "-m", program]
    for _, _, field in _fields():
        name = settings.flag_name(field)
        value = values[name]
        if value is None or value == defaults[name]:
            continue
        args.append(_flag_text(name, field.metadata["kind"], value))
    return shlex.join(args)


def markdown_table():
    """The flag reference of docs/flags.md: one row per setting, grouped."""
    lines = ["| flag | group | default | changes results | help |", "| --- | --- | --- | --- | --- |"]
    for group, _, field in _fields():
        default = _default_text(field)
        shown = "" if default in (None, "") else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        changes = "yes" if field.metadata["result"] else "no"
        lines.append(f"| `--{settings.flag_name(field)}` | {group} | {shown} | {changes} | "
                     f"{_help(field).replace('|', '/')} |")
    return "\n".join(lines)
