"""`dlcore` and `dlcore-run` work from the core install: with the book's extras
(nbformat, nbclient, IPython, Jupyter, scikit-learn, SciPy, ...) made unimportable,
every dlcore module imports and `dlcore-run --help` answers.

In-process, to stay fast: dlcore's modules are dropped from `sys.modules`, so importing
dlcore runs each one's top level again (torch and friends stay loaded), which is where
an eager `import nbformat` would fail."""

import importlib
import pkgutil
import sys

import pytest

BOOK_EXTRAS = (
    "nbformat nbclient IPython jupyter_client ipykernel ipywidgets jupyter_book "
    "jupyterlab nbval sklearn skimage scipy threadpoolctl tensorboard"
).split()


@pytest.fixture
def fresh_dlcore(monkeypatch):
    """dlcore's modules forgotten (and restored afterwards), the extras blocked: the
    next `import dlcore` runs every dlcore module's top level again."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "dlcore"}
    for name in saved:
        del sys.modules[name]
    for name in BOOK_EXTRAS:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises
    yield
    for name in [k for k in sys.modules if k.split(".")[0] == "dlcore"]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_every_dlcore_module_imports_without_the_book_extras(fresh_dlcore, capsys):
    with pytest.raises(ModuleNotFoundError, match="nbformat"):
        importlib.import_module("nbformat")  # the block is real
    dlcore = importlib.import_module("dlcore")
    runner = importlib.import_module("dlcore.runner")
    for info in pkgutil.walk_packages(dlcore.__path__, "dlcore."):
        importlib.import_module(info.name)
    with pytest.raises(SystemExit) as exit:
        runner.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--stale" in out
