import torch

import dlcore
from dlcore.exercises import check


def test_check_passes_a_right_answer(capsys):
    assert check(
        lambda x: x * 2, lambda x: x + x, [(torch.randn(3),), (torch.ones(2, 2),)]
    )
    assert "pass" in capsys.readouterr().out


def test_check_reports_first_mismatch_with_hint(capsys):
    assert not check(
        lambda x: x * 3,
        lambda x: x + x,
        [(torch.zeros(2),), (torch.ones(2),)],
        hint="double it",
    )
    out = capsys.readouterr().out
    assert "case 2/2" in out and "hint: double it" in out


def test_check_says_not_attempted_for_a_stub(capsys):
    def stub(x):
        raise NotImplementedError

    assert not check(stub, lambda x: x, [(1,)])
    assert "not attempted" in capsys.readouterr().out


def test_result_card_shows_metrics_data_device_and_time():
    card = dlcore.ResultCard(
        "demo", {"accuracy": "98.1 %"}, data="MNIST test", training_seconds=12.34
    )
    text = card._repr_markdown_()
    for expected in ("98.1 %", "MNIST test", "12.3 s", dlcore.device_name(), "profile"):
        assert expected in text
