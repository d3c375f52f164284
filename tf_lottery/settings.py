"""Settings declared once: a dataclass field carries its flag name, type, help, checks and role.

`setting(...)` builds a field whose metadata the rest of the package reads:
the absl flags, the parsing of flag values, the checks run in
`__post_init__`, the command line that reruns a config and the flag table in
the docs are all generated from it. Nothing here imports TensorFlow.
"""

import dataclasses
import math


class ConfigError(ValueError):
    """An invalid setting; `field` names the setting (and the flag of the same name)."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_steps(value, field):
    """An iteration count as an int, or an epoch count kept as a string like '160ep'."""
    if isinstance(value, bool):
        raise ConfigError(field, f"must be a number of iterations or epochs, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    try:
        if text.endswith("ep"):
            if not 0 <= float(text[:-2]) < math.inf:  # NaN fails too
                raise ValueError
            return text
        return int(text[:-2] if text.endswith("it") else text)
    except ValueError:
        raise ConfigError(field, f"must be iterations (500 or 500it) or epochs (160ep), "
                                 f"got {value!r}") from None


def _ints(value, field):
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"must be a comma-separated list of integers, got {value}") from None


def _shape(value, field):
    if isinstance(value, (tuple, list)):
        return tuple(value)
    try:
        return tuple(int(v) for v in str(value).lower().split("x"))
    except ValueError:
        raise ConfigError(field, f"must look like 1x4, got {value!r}") from None


@dataclasses.dataclass(frozen=True)
class Kind:
    """How a setting's value travels: absl flag type, parsing from the flag, text for a command line."""
    define: str                       # absl DEFINE_* suffix
    parse: object = None              # (flag value, field) -> field value
    text: object = str                # field value -> flag text
    sequence: bool = False            # stored as a tuple


def _list_text(value):
    return ",".join(map(str, value))


KINDS = {
    "int": Kind("integer"),
    "float": Kind("float"),
    "str": Kind("string"),
    "bool": Kind("bool"),
    "steps": Kind("string", parse=parse_steps),
    "ints": Kind("list", parse=_ints, text=_list_text, sequence=True),
    "strs": Kind("list", parse=lambda v, f: tuple(v), text=_list_text, sequence=True),
    "steps_list": Kind("list", parse=lambda v, f: tuple(parse_steps(s, f) for s in v),
                       text=_list_text, sequence=True),
    "shape": Kind("string", parse=_shape, text=lambda v: "x".join(map(str, v)), sequence=True),
}


def setting(default, help, kind, *, flag=True, choices=None, choice_key=None, check=None, result=True,
            later=False):
    """A dataclass field declared with everything the package needs to know about it.

    Args:
        default: the default value (tuples for list settings).
        help: the flag's help text.
        kind: a key of KINDS: how the value is parsed from a flag and written back.
        flag: the flat name (flag, config.json key) if it differs from the field
            name; False for a field that is not a flag (set by code).
        choices: a tuple of names, or the Registry of the setting's axis
            (read when checked, so later registrations count).
        choice_key: item -> the name checked against choices, for values that
            say more than a name (a control spec such as random_reinit.2@7).
        check: (predicate, message): the value must satisfy predicate(value); or a
            tuple of such pairs, checked in order.
        result: whether the value changes results (enters the folder hash and
            the resume check).
        later: added after the first experiments: enters the hash only when
            set away from its default, so existing folders keep their names.
    """
    metadata = {"help": help, "kind": kind, "flag": flag, "choices": choices,
                "choice_key": choice_key, "check": check, "result": result, "later": later}
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field):
    """The flat (flag and config.json) name of a dataclass field."""
    flag = field.metadata.get("flag", True)
    return field.name if flag is True else flag


def flag_fields(cls):
    """The fields of a settings class that are flags."""
    return [f for f in dataclasses.fields(cls) if f.metadata and f.metadata.get("flag") is not False]


def choices_of(field):
    """The names a field accepts (empty: any value)."""
    return tuple(field.metadata.get("choices") or ())


def describe_choices(field):
    """'a, b, c', or a registry's 'name: help; ...'."""
    choices = field.metadata.get("choices")
    return choices.describe() if hasattr(choices, "describe") else ", ".join(choices or ())


class Settings:
    """Base of the settings groups: normalises and checks every field on construction."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not field.metadata:
                continue
            value = getattr(self, field.name)
            kind = KINDS[field.metadata["kind"]]
            if kind.parse is not None and value is not None and (
                    kind.sequence or not isinstance(value, (int, float)) or isinstance(value, bool)):
                value = kind.parse(value, flag_name(field))
            elif kind.sequence:
                value = tuple(value or ())
            object.__setattr__(self, field.name, value)
        for field in dataclasses.fields(self):
            if field.metadata:
                self._check_field(field)
        self.check()

    def _check_field(self, field):
        """Choices (a callable, such as a TF-MOT schedule, stands for itself), finite floats, no empty
        text, and the field's check."""
        value = getattr(self, field.name)
        if value is None and field.default is not None:
            self.fail(field.name, "must be given")
        choices = choices_of(field)
        sequence = KINDS[field.metadata["kind"]].sequence
        values = value if sequence else (value,)
        if choices and not (value is None and field.default is None) and not callable(value):
            key = field.metadata.get("choice_key") or (lambda v: v)
            if not all(isinstance(v, str) and key(v) in choices for v in values):
                self.fail(field.name, f"must be {'names from' if sequence else 'one of'} "
                                      f"{', '.join(choices)}")
        kind = field.metadata["kind"]
        if kind == "float" and value is not None and not math.isfinite(value):
            self.fail(field.name, "must be a finite number")
        if kind == "str" and value == "":
            self.fail(field.name, "must not be empty (leave the flag out for its default)")
        check = field.metadata.get("check")
        if check is not None and value is not None:
            for predicate, message in (check if isinstance(check[0], tuple) else (check,)):
                if not predicate(value):
                    self.fail(field.name, message)

    def check(self):
        """Checks between fields of the group; subclasses raise through self.fail."""

    def fail(self, field_name, message):
        """Raises ConfigError naming the flag of `field_name` and its value."""
        field = {f.name: f for f in dataclasses.fields(self)}[field_name]
        raise ConfigError(flag_name(field), f"{message}, got {getattr(self, field_name)!r}")

    def flat(self):
        """{flag name: JSON-ready value} for the group's flag fields."""
        return {flag_name(f): list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in flag_fields(type(self))}
