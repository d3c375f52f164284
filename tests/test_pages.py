"""The published pages: every generated block equals what the packed results give, and no page
restates an interval by hand."""

import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import pages  # noqa: E402

_INTERVAL = re.compile(r"[+-]?\d[\d,.]*%?x? \[[+-]?\d[\d,.]*%?x?, [+-]?\d")


def _prose(text):
    """The text of a page outside its generated blocks and code fences."""
    text = pages._BLOCK.sub("", text)
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_every_generated_block_is_what_the_packs_give():
    assert pages.run("check") == {}


@pytest.mark.parametrize("page", pages.PAGES)
def test_a_page_quotes_results_only_from_generated_blocks(page):
    text = (REPO / page).read_text()
    assert pages._BLOCK.search(text), f"{page} has no generated block"
    assert not _INTERVAL.findall(_prose(text)), f"{page} restates intervals by hand"


def test_a_changed_number_in_a_block_is_found(tmp_path):
    text = (REPO / "docs/results/lenet300_mnist.md").read_text()
    match = re.search(r"\| 7 \| 21\.07 \| (0\.\d{4})", text)
    tampered = text.replace(match.group(0), match.group(0)[:-1] + str((int(match.group(0)[-1]) + 1) % 10), 1)
    with pages.tempfile.TemporaryDirectory() as tmp:
        regenerated, changed = pages.regenerate(tampered, pages.Sources(tmp))
    assert changed and regenerated == text


def test_a_section_runs_to_the_next_heading_of_its_level():
    text = "# A\n\n## B\nb1\n### C\nc1\n## D\nd1\n"
    assert pages.section(text, "B") == "b1\n### C\nc1"
    assert pages.section(text, "C") == "c1"
    with pytest.raises(KeyError, match="no section 'E'"):
        pages.section(text, "E")


def test_a_page_not_in_the_list_is_refused_before_anything_is_written(capsys):
    assert pages.main(["pages.py", "write", "docs/results/nope.md"]) == 2
    assert capsys.readouterr().err.endswith("\nnot a page of PAGES: docs/results/nope.md\n")
