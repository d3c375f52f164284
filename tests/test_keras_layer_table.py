"""docs/keras_fit.md's table of Keras layer kinds is what tf_lottery does with each (tools/keras_layer_table.py)."""

import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import keras_layer_table as table  # noqa: E402


@pytest.fixture(scope="module")
def regenerated():
    text = table.PAGE.read_text()
    return text, table.regenerate(text, table.render(*table.rows()))


def test_the_page_lists_what_wrapping_each_layer_kind_does(regenerated):
    text, new = regenerated
    assert new == text, "docs/keras_fit.md's layer table is stale: python tools/keras_layer_table.py write"


def test_every_kind_is_in_one_place_and_counted(regenerated):
    block = table._BLOCK.search(regenerated[1]).group("body")
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    counts = re.search(r"(\d+) layer kinds carry weights; (\d+) are wrapped by default, (\d+) with "
                       r"`prunable=` and (\d+) are not supported\. (\d+) kinds carry no weights", block)
    total, default, prunable, unsupported, without = map(int, counts.groups())
    assert total == len(rows) == default + prunable + unsupported
    assert default == sum(line.endswith("| wrapped by default |") for line in rows)
    assert prunable == sum(line.endswith("| wrapped with `prunable=` |") for line in rows)
    named = [re.match(r"\| `(\w+)`", line).group(1) for line in rows]
    named += re.findall(r"`(\w+)`", block.split("carry no weights:")[1].split(". Not built:")[0])
    named += re.findall(r"`(\w+)` \(", block.split("Not built:")[1])
    assert len(named) == total + without + len(table.NOT_BUILT)
    assert sorted(named) == sorted(table.layer_kinds())  # every kind of keras.layers, once


def test_a_layer_whose_masks_do_not_reach_its_output_is_not_supported(monkeypatch):
    # A wrapper that ignores its masks: the check against the layer with pruned weights at zero fails.
    monkeypatch.setattr(table.tfl.LotteryWrapper, "_used_weights", lambda self, training=None: [])
    row = table.classify("Dense", ["Dense"])
    assert row == table.Row(("Dense",), "unsupported", reason="pruning does not change the output")
