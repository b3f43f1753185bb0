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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_pins_this_version(path):
    """Colab readers get the dlcore the page was made with (CONTRIBUTING.md's cell)."""
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    src = first.source
    # the CONTRIBUTING.md cell, or its form for a chapter with more than one package
    # (a {module: pip spec} dict whose missing entries are installed together)
    plain = 'find_spec("dlcore") is None' in src
    several = '"dlcore": "dlcore @ git+' in src and "find_spec(mod) is None" in src
    assert plain or several, "the first code cell must install dlcore when missing"
    assert f"dlcore-book@v{runner_version()}" in src
