"""The notebook runner: stamps that anyone can recompute, tidy progress output, staleness."""

import hashlib

import nbformat
import pytest

from dlcore import runner


def test_source_hash_is_sha256_of_joined_code_cells():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("a = 1\n"),
            nbformat.v4.new_markdown_cell("# text"),
            nbformat.v4.new_code_cell(["b = ", "2"]),
        ]
    )
    assert (
        runner.source_sha256(nb)
        == hashlib.sha256(b"a = 1\n\nb = 2").hexdigest()
    )


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


def test_run_notebook_stamps_and_detects_staleness(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCORE_PROFILE", "smoke")
    path = tmp_path / "tiny.ipynb"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import dlcore\nprint(dlcore.profile())"),
            nbformat.v4.new_code_cell("1 + 1"),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    stamp = runner.run_notebook(path, profile="full", timeout=120)
    assert set(stamp) == {
        "source_sha256",
        "profile",
        "device",
        "wall_seconds",
        "executed_at",
        "dlcore_version",
        "torch_version",
    }
    done = nbformat.read(path, as_version=4)
    assert done.metadata["dlcore"] == stamp
    assert done.cells[0].outputs[0]["text"] == "full\n"  # the kernel saw the profile
    assert runner.problems(done) == []
    done.cells[1].source = "1 + 2"
    assert any("stale" in p for p in runner.problems(done))


def test_runner_refuses_an_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="smoke, full"):
        runner.run_notebook(tmp_path / "x.ipynb", profile="quick")
