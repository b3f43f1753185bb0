"""Every chapter in _toc.yml carries the outputs of one clean, stamped `full` run of its
current code, including the `dlcore` source the page displays (see `dlcore.runner`)."""

import nbformat
import pytest
from conftest import ROOT

from dlcore import runner

NOTEBOOKS = runner.toc_notebooks(ROOT)


def test_toc_lists_notebooks():
    assert len(NOTEBOOKS) >= 14


def test_every_toc_entry_exists():
    assert runner.missing_toc_entries(ROOT) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stamped_fresh_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert runner.problems(nb) == []
    stamp = nb.metadata["dlcore"]
    assert stamp["profile"] == "full"
    assert stamp["dlcore_version"] == runner_version()


def runner_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("dlcore")
