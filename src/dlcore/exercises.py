"""Auto-checked exercises: the reader writes a function, `check` compares it with a
reference."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def check(
    candidate: Callable,
    reference: Callable,
    cases: Iterable[tuple],
    *,
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> bool:
    """Call `candidate(*case)` and `reference(*case)` on every case; print "pass" or the
    first mismatch (with `hint`). Tensors must agree in shape, dtype and values; floats
    in value; anything else exactly. Returns whether all cases passed; never raises for
    a wrong answer.
    """
    cases = list(cases)
    if not cases:
        raise ValueError("check(cases=...) is empty: give at least one input tuple")
    for i, case in enumerate(cases):
        if not isinstance(case, tuple):
            raise TypeError(
                f"check: case {i + 1} is {type(case).__name__}, not a tuple"
            )
        expected = reference(*case)
        try:
            got = candidate(*case)
            _compare(got, expected, atol, rtol)
        except NotImplementedError:
            print(
                "not attempted yet: replace the `raise NotImplementedError` "
                "with your code."
            )
            return False
        except Exception as err:  # a wrong answer is feedback, not a crash
            shown = ", ".join(_describe(a) for a in case)
            print(
                f"mismatch on case {i + 1}/{len(cases)} with inputs ({shown}):\n  {err}"
            )
            if hint:
                print(f"hint: {hint}")
            return False
    print(f"pass: all {len(cases)} cases agree with the reference.")
    return True


def _compare(got: Any, expected: Any, atol: float, rtol: float) -> None:
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"expected a tensor, got {type(got).__name__}")
        if got.shape != expected.shape:
            raise AssertionError(
                f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
            )
        if got.dtype != expected.dtype:
            raise AssertionError(f"dtype {got.dtype}, expected {expected.dtype}")
        torch.testing.assert_close(got, expected, atol=atol, rtol=rtol, equal_nan=True)
    elif isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            raise AssertionError(f"expected {len(expected)} values, got {got!r}")
        for g, e in zip(got, expected):
            _compare(g, e, atol, rtol)
    elif isinstance(expected, float):
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            raise AssertionError(f"expected a number, got {type(got).__name__}")
        if abs(got - expected) > atol + rtol * abs(expected) or got != got:
            raise AssertionError(f"got {got}, expected {expected}")
    elif got != expected:
        raise AssertionError(f"got {got!r}, expected {expected!r}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    return repr(value)
