"""The notebook runner: stamps anyone can recompute, tidy progress output, staleness."""

import contextlib
import hashlib
import importlib.metadata
import io

import nbformat
import pytest

import dlcore
from dlcore import runner, runtime, source


def test_source_hash_is_sha256_of_joined_code_cells():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("a = 1\n"),
            nbformat.v4.new_markdown_cell("# text"),
            nbformat.v4.new_code_cell(["b = ", "2"]),
        ]
    )
    assert runner.source_sha256(nb) == hashlib.sha256(b"a = 1\n\nb = 2").hexdigest()


def test_progress_bars_keep_their_final_state():
    out = nbformat.v4.new_output
    outputs = [
        out("stream", name="stdout", text="\rfit: 10%"),
        out("stream", name="stdout", text="\rfit: 50%"),
        out("stream", name="stdout", text="\r   \repoch 1 loss 0.1\n"),
        out("stream", name="stdout", text="\rfit: 100%"),
        out("stream", name="stdout", text="\n"),
        out("stream", name="stderr", text="note\n"),
    ]
    tidy = runner.tidy_streams(outputs)
    assert [o["text"] for o in tidy] == ["epoch 1 loss 0.1\nfit: 100%\n", "note\n"]


KERNEL_FIELDS = {"torch_version", "device", "cpu", "python_version", "dlcore_version"}


def new_notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture
def extra_dlcore_modules(tmp_path, monkeypatch):
    """A folder whose .py files import as `dlcore.<name>`, here and in kernels."""
    folder = tmp_path / "dlcore_extra"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(dlcore, "__path__", [*dlcore.__path__, str(folder)])
    return folder


KERNEL_PATH_SETUP = (
    "import sys, dlcore\n"
    "dlcore.__path__.append({folder!r})\n"
    "from dlcore import shown, imported\n"
)


def test_stamp_is_read_inside_the_kernel_and_covers_dlcore(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCORE_PROFILE", "smoke")
    path = new_notebook(
        tmp_path / "tiny.ipynb",
        "import dlcore, torch\nprint(dlcore.profile())\ntorch.set_num_threads(1)",
        "from dlcore import exercises\ndlcore.show_source(exercises.check)",
    )
    stamp = runner.run_notebook(path, profile="full", timeout=120)
    done = nbformat.read(path, as_version=4)
    assert done.metadata["dlcore"] == stamp
    assert len(done.cells) == 2  # the probe cell is not stored
    assert done.cells[0].outputs[0]["text"] == "full\n"  # the kernel saw the profile
    assert KERNEL_FIELDS <= set(stamp)
    # Read in the kernel after the last cell, not in this process (1 thread there).
    assert stamp["device"].endswith(", 1 threads") or "cuda" in stamp["device"]
    assert stamp["dlcore_version"] == importlib.metadata.version("dlcore")
    assert stamp["dlcore_displayed"] == ["dlcore.exercises"]
    modules = stamp["dlcore_modules"]
    assert {"dlcore", "dlcore.exercises", "dlcore.train"} <= set(modules)
    assert modules["dlcore.exercises"] == source.module_digest(
        dlcore.exercises.__file__
    )
    assert stamp["dlcore_digest"] == runner.combined_digest(modules)
    assert runner.problems(done) == []
    done.cells[1].source = "1 + 2"
    assert any("code changed" in p for p in runner.problems(done))


def test_displayed_module_change_makes_the_page_stale(
    tmp_path, monkeypatch, extra_dlcore_modules
):
    monkeypatch.setenv("DLCORE_PROFILE", "smoke")
    shown = extra_dlcore_modules / "shown.py"
    imported = extra_dlcore_modules / "imported.py"
    shown.write_text("def taught(x):\n    return 2 * x\n")
    imported.write_text("VALUE = 1\n")
    root = tmp_path / "book"
    (root / "notebooks").mkdir(parents=True)
    path = new_notebook(
        root / "notebooks" / "01_tiny.ipynb",
        KERNEL_PATH_SETUP.format(folder=str(extra_dlcore_modules)),
        "dlcore.show_source(shown.taught)",
    )
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/01_tiny\n"
    )
    (root / "intro.md").write_text("# Intro\n")
    stamp = runner.run_notebook(path, profile="full", timeout=120)
    assert stamp["dlcore_displayed"] == ["dlcore.shown"]
    assert {"dlcore.shown", "dlcore.imported"} <= set(stamp["dlcore_modules"])
    nb = nbformat.read(path, as_version=4)
    assert runner.problems(nb) == [] and runner.stale_notebooks(root) == {}

    # A module the page only imports: not a freshness failure, but `--stale` lists it.
    imported.write_text("VALUE = 2\n")
    assert runner.problems(nb) == []
    assert runner.stale_notebooks(root) == {path: ["dlcore.imported"]}

    # A module whose source the page shows verbatim: the stored page is stale.
    shown.write_text("def taught(x):\n    return x + x\n")
    assert runner.problems(nb) == [
        "stale: dlcore.shown changed and the page shows its source"
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        monkeypatch.chdir(root)
        assert runner.main(["--stale"]) == 0
    assert "notebooks/01_tiny.ipynb: dlcore.imported, dlcore.shown" in out.getvalue()

    # `--stale --rerun` runs it again; then nothing is stale.
    with contextlib.redirect_stdout(io.StringIO()):
        assert runner.main(["--stale", "--rerun"]) == 0
    nb = nbformat.read(path, as_version=4)
    assert runner.problems(nb) == [] and runner.stale_notebooks(root) == {}


def test_a_module_edited_during_the_run_is_not_stamped(
    tmp_path, monkeypatch, extra_dlcore_modules
):
    monkeypatch.setenv("DLCORE_PROFILE", "smoke")
    (extra_dlcore_modules / "shown.py").write_text("A = 1\n")
    (extra_dlcore_modules / "imported.py").write_text("B = 1\n")
    path = new_notebook(
        tmp_path / "edit.ipynb",
        KERNEL_PATH_SETUP.format(folder=str(extra_dlcore_modules)),
        f"open({str(extra_dlcore_modules / 'imported.py')!r}, 'w').write('B = 2')",
    )
    stamp = runner.run_notebook(path, profile="full", timeout=120)
    assert stamp["dlcore_modules"]["dlcore.imported"] == runner.EDITED_DURING_RUN
    assert stamp["dlcore_modules"]["dlcore.shown"] != runner.EDITED_DURING_RUN
    assert runner.changed_modules(stamp) == ["dlcore.imported"]
    assert runner.changed_modules(stamp, ["dlcore.shown"]) == []


def test_missing_toc_entry_is_reported(tmp_path):
    (tmp_path / "notebooks").mkdir()
    new_notebook(tmp_path / "notebooks" / "a.ipynb", "1")
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: P\n    chapters:\n"
        "      - file: notebooks/a\n      - file: notebooks/b_renamed\n"
    )
    assert runner.toc_files(tmp_path) == ["intro", "notebooks/a", "notebooks/b_renamed"]
    assert runner.missing_toc_entries(tmp_path) == ["notebooks/b_renamed"]
    assert runner.toc_notebooks(tmp_path) == [tmp_path / "notebooks" / "a.ipynb"]


def test_old_stamps_without_digests_are_not_trusted():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.cells[0].execution_count = 1
    nb.metadata["dlcore"] = {"source_sha256": runner.source_sha256(nb)}
    assert runner.problems(nb) == [
        "stamp has no dlcore module digests (made by an old runner)"
    ]


def test_headline_rows_skip_timings():
    card = dlcore.ResultCard(
        "demo", {"accuracy": "98.1 %"}, data="d", training_seconds=1
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("card")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "execute_result", data={"text/markdown": card._repr_markdown_()}
        )
    ]
    (rows,) = runner.headline_rows(nb)
    names = [name for name, _ in rows]
    assert ("accuracy", "98.1 %") in rows and "data" in names
    assert "training time" not in names and "notebook wall time so far" not in names


def test_a_chapter_rerun_reproduces_its_headline_numbers(root, monkeypatch):
    """Same machine, same thread count: a re-run gives the stored result cards."""
    path = root / "notebooks" / "part0_start" / "02_first_classifier.ipynb"
    stamp = nbformat.read(path, as_version=4).metadata["dlcore"]
    if stamp.get("cpu") != runtime.cpu_model():
        pytest.skip(f"stamped on {stamp.get('cpu')}, this is {runtime.cpu_model()}")
    if stamp.get("cpu_flags_sha256") != runner.cpu_flags_digest():
        # same model name, other vector instructions: other kernels, other rounding
        pytest.skip("stamped on a CPU with other instruction-set flags")
    threads = stamp["device"].rsplit(", ", 1)[-1].split()[0]
    monkeypatch.setenv("OMP_NUM_THREADS", threads)  # the kernel inherits it
    assert runner.reproduces(path) == []


def test_cpu_flags_digest_is_stable_and_short():
    digest = runner.cpu_flags_digest()
    assert digest == runner.cpu_flags_digest()
    assert digest == "" or (len(digest) == 16 and int(digest, 16) >= 0)


def test_runner_refuses_an_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="smoke, full"):
        runner.run_notebook(tmp_path / "x.ipynb", profile="quick")
