"""`dlcore` and `dlcore-run` work from the core install: with the book's extras
(nbformat, nbclient, IPython, Jupyter, scikit-learn, SciPy, ...) made unimportable,
every dlcore module imports and `dlcore-run --help` answers."""

import importlib
import os
import pkgutil
import subprocess
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


def test_dlcore_run_help_in_a_fresh_interpreter_without_nbformat():
    """The same in a new process, where nothing was imported before (slower: the
    interpreter imports torch, torchvision and matplotlib)."""
    script = (
        "import sys\n"
        "sys.modules['nbformat'] = sys.modules['nbclient'] = None\n"
        "from dlcore.runner import main\n"
        "main(['--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
