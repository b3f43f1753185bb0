"""Every chapter in _toc.yml carries the outputs of one clean, stamped `full` run of its current code."""

import nbformat
import pytest
from conftest import ROOT

from dlcore import runner

NOTEBOOKS = runner.toc_notebooks(ROOT)


def test_toc_lists_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stamped_fresh_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert runner.problems(nb) == []
    assert nb.metadata["dlcore"]["profile"] == "full"
