"""The shared figures: what `plot_history` and `show_images` draw (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dlcore  # noqa: E402
from dlcore.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(epochs=3, accuracy=True, val=True):
    h = History()
    for e in range(1, epochs + 1):
        record = {"epoch": e, "train_loss": 1.0 / e}
        if accuracy:
            record["train_accuracy"] = 0.5 + 0.1 * e
        if val:
            record["val_loss"] = 1.5 / e
            if accuracy:
                record["val_accuracy"] = 0.4 + 0.1 * e
        record.update(lr=0.1, seconds=1.0)
        h.epochs.append(record)
    return h


def lines(ax):
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.get_lines()
    }


def test_plot_history_one_panel_per_metric_train_and_val():
    fig = dlcore.plot_history(history(), title="a run")
    assert len(fig.axes) == 2
    loss, acc = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert fig._suptitle.get_text() == "a run"
    drawn = lines(loss)
    assert drawn["train"] == ([1, 2, 3], pytest.approx([1.0, 0.5, 1 / 3]))
    assert drawn["val"] == ([1, 2, 3], pytest.approx([1.5, 0.75, 0.5]))
    assert lines(acc)["val"][1] == pytest.approx([0.5, 0.6, 0.7])
    legend = [t.get_text() for t in loss.get_legend().get_texts()]
    assert legend == ["train", "val"]


def test_plot_history_defaults_to_what_the_history_holds():
    fig = dlcore.plot_history(history(accuracy=False, val=False))
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "loss"
    assert list(lines(fig.axes[0])) == ["train"]  # no val line, no suptitle
    assert fig._suptitle is None
    fig = dlcore.plot_history(history(), metrics="accuracy")  # one name as a string
    assert [ax.get_title() for ax in fig.axes] == ["accuracy"]


def test_plot_history_puts_each_value_at_its_own_epoch():
    h = history(epochs=4, val=False)
    for e in h.epochs[1::2]:
        e["val_loss"] = 2.0 * e["epoch"]  # validated every second epoch only
    fig = dlcore.plot_history(h, metrics=["loss"])
    assert lines(fig.axes[0])["val"] == ([2, 4], [4.0, 8.0])


def test_plot_history_with_an_unknown_metric_names_it_and_the_known_ones():
    with pytest.raises(ValueError, match="unknown metric 'acc'.*holds: loss, accuracy"):
        dlcore.plot_history(history(), metrics=["loss", "acc"])
    with pytest.raises(ValueError, match="unknown metric 'accuracy'.*holds: loss$"):
        dlcore.plot_history(history(accuracy=False), metrics=("accuracy",))
    with pytest.raises(ValueError, match="no metric to plot"):
        dlcore.plot_history(history(), metrics=[])
    with pytest.raises(ValueError, match="no train_"):
        dlcore.plot_history(History())
    with pytest.raises(TypeError, match="dlcore.History"):
        dlcore.plot_history({"train_loss": [1.0]})
    assert plt.get_fignums() == []  # no half-drawn figure left behind


def test_show_images_grid_labels_and_title():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 3, 2)
    fig = dlcore.show_images(
        images * 25, [f"#{i}" for i in range(10)], ncols=4, title="t"
    )
    assert len(fig.axes) == 12  # 3 rows of 4, the last two empty
    with_image = [ax for ax in fig.axes if ax.get_images()]
    assert len(with_image) == 10
    assert [ax.get_title() for ax in with_image] == [f"#{i}" for i in range(10)]
    assert all(not ax.axison for ax in fig.axes)
    assert fig._suptitle.get_text() == "t"
    shown = with_image[3].get_images()[0]
    assert shown.get_array().shape == (3, 2)  # (H, W): one grey channel
    np.testing.assert_allclose(shown.get_array(), np.full((3, 2), 75 / 255), rtol=1e-6)
    assert shown.get_cmap().name == "gray" and shown.get_clim() == (0, 1)


def test_show_images_undoes_the_normalisation_of_float_rgb_images():
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    pixels = torch.tensor([0.2, 0.6, 0.1]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    normalised = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    fig = dlcore.show_images(normalised, mean=mean, std=std, ncols=2)
    rgb = fig.axes[0].get_images()[0].get_array()
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[0, 0], [0.2, 0.6, 0.1], atol=1e-6)
    assert all(ax.get_title() == "" for ax in fig.axes)  # no labels given
    # out-of-range values are clipped to [0, 1], not wrapped
    fig = dlcore.show_images(torch.full((1, 3, 2, 2), 7.0), ncols=1)
    assert fig.axes[0].get_images()[0].get_array().max() == 1.0


def test_show_images_refuses_what_it_cannot_draw():
    images = torch.zeros(4, 1, 2, 2)
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        dlcore.show_images(images, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(4, 2, 2\)"):
        dlcore.show_images(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="C 1 or 3"):
        dlcore.show_images(torch.zeros(4, 2, 2, 2))
    with pytest.raises(ValueError, match="N >= 1"):
        dlcore.show_images(torch.zeros(0, 1, 2, 2))
    with pytest.raises(ValueError, match="ncols must be a positive int, got 0"):
        dlcore.show_images(images, ncols=0)
    with pytest.raises(ValueError, match="mean and std go together"):
        dlcore.show_images(images, mean=(0.5,))
    assert plt.get_fignums() == []
