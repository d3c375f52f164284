"""A registry of named entries for one axis of variation (models, datasets, structures, controls...).

Each axis keeps one `Registry`; an entry is added by one `register` call next
to its code, and the flags, the config checks, `--helpfull` and the docs read
the names and help texts from it. Nothing here imports TensorFlow.
"""


class UnknownEntry(ValueError):
    """A name that is not registered; the message lists the registered names."""


class Registry:
    """Name -> entry (a class or a function) for one axis, in registration order."""

    def __init__(self, axis):
        self.axis = axis
        self._entries = {}
        self._help = {}

    def register(self, name, help=None, *, replace=False):
        """Decorator adding the decorated class or function as `name`.

        `help` defaults to the first line of the entry's docstring. Registering
        a taken name is an error unless `replace=True`.
        """
        def decorate(entry):
            if name in self._entries and not replace:
                raise ValueError(f"{self.axis} '{name}' is already registered")
            self._entries[name] = entry
            doc = (entry.__doc__ or "").strip().splitlines()
            self._help[name] = help if help is not None else (doc[0] if doc else "")
            return entry
        return decorate

    def unregister(self, name):
        """Removes `name` (for tests that register a temporary entry)."""
        self._entries.pop(name, None)
        self._help.pop(name, None)

    def get(self, name):
        """The entry registered as `name`; UnknownEntry names the choices otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownEntry(f"unknown {self.axis} {name!r}; choose one of "
                               f"{', '.join(self._entries)}") from None

    def names(self):
        """The registered names, in registration order."""
        return tuple(self._entries)

    def help(self, name):
        return self._help[name]

    def describe(self):
        """'name: help' for every entry, for flag help and the docs."""
        return "; ".join(f"{name}: {self._help[name].rstrip('.')}" if self._help[name] else name
                         for name in self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)
