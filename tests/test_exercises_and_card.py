import pytest
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


def test_check_fails_a_wrong_dtype_or_shape(capsys):
    ref = lambda x: x.double() * 2  # noqa: E731
    assert not check(lambda x: x * 2, ref, [(torch.ones(3),)])  # float32 != float64
    assert "dtype torch.float32, expected torch.float64" in capsys.readouterr().out
    # (3,) broadcasts against (1, 3) with equal values: still a wrong answer
    assert not check(lambda x: (x * 2).view(1, 3), lambda x: x * 2, [(torch.ones(3),)])
    assert "shape (1, 3), expected (3,)" in capsys.readouterr().out
    assert not check(lambda x: [1.0], lambda x: x * 2, [(torch.ones(3),)])
    assert "expected a tensor, got list" in capsys.readouterr().out


def test_check_compares_tuples_elementwise_and_floats_by_value(capsys):
    ref = lambda x: (x.sum(), float(x.max()))  # noqa: E731
    assert check(lambda x: (x.sum(), float(x.max())), ref, [(torch.arange(4.0),)])
    assert not check(lambda x: (x.sum(), 2.0), ref, [(torch.arange(4.0),)])
    assert "got 2.0, expected 3.0" in capsys.readouterr().out
    assert not check(lambda x: "3.0", lambda x: 3.0, [(0,)])
    assert "expected a number" in capsys.readouterr().out


def test_check_refuses_an_empty_or_malformed_case_list():
    with pytest.raises(ValueError, match="cases"):
        check(lambda x: x, lambda x: x, [])
    with pytest.raises(TypeError, match="case 1 is Tensor, not a tuple"):
        check(lambda x: x, lambda x: x, [torch.ones(2)])
