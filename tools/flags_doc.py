"""Writes docs/flags.md, the flag reference, from the settings' declarations (python tools/flags_doc.py)."""

import pathlib

from tf_lottery import flags

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "flags.md"

HEADER = """# Flags of binaries.lottery and binaries.train

Generated from the declarations in `tf_lottery/config.py` by `python tools/flags_doc.py`; a test
checks that this file is current. Every flag is also a field of a settings group
(`ExperimentConfig.<group>.<field>`) and a key of `config.json`. "changes results" says whether the
value enters the folder hash and the check that refuses a changed config in an existing folder.
Choices come from the registries, so a registered model, dataset, structure, criterion, scope,
schedule or control is listed here and accepted by the flag.

"""


def text():
    return HEADER + flags.markdown_table() + "\n"


if __name__ == "__main__":
    DOC.write_text(text())
    print(f"wrote {DOC}")
