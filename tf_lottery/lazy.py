"""Package attributes that load their module on first use, so importing a package stays light."""

import importlib


def attributes(package, exports, submodules):
    """(__getattr__, __dir__) for `package`: `exports` maps a name to the module defining it,
    `submodules` are the package's modules; each loads when first asked for and is then cached."""
    namespace = importlib.import_module(package).__dict__
    names = sorted(exports) + list(submodules)

    def getattr_(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        namespace[name] = value
        return value

    def dir_():
        return names

    return getattr_, dir_
