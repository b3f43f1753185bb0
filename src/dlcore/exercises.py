"""Auto-checked exercises: the reader writes a function, `check` compares it with a reference."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch


def check(candidate: Callable, reference: Callable, cases: Iterable[tuple], *, hint: str = "",
          atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Call `candidate(*case)` and `reference(*case)` on every case; print "pass" or the first
    mismatch (with `hint`). Returns whether all cases passed; never raises for a wrong answer."""
    cases = list(cases)
    for i, case in enumerate(cases):
        expected = reference(*case)
        try:
            got = candidate(*case)
            _compare(got, expected, atol, rtol)
        except NotImplementedError:
            print("not attempted yet: replace the `raise NotImplementedError` with your code.")
            return False
        except Exception as err:  # a wrong answer is feedback, not a crash
            shown = ", ".join(_describe(a) for a in case)
            print(f"mismatch on case {i + 1}/{len(cases)} with inputs ({shown}):\n  {err}")
            if hint:
                print(f"hint: {hint}")
            return False
    print(f"pass: all {len(cases)} cases agree with the reference.")
    return True


def _compare(got: Any, expected: Any, atol: float, rtol: float) -> None:
    if isinstance(expected, torch.Tensor) or isinstance(got, torch.Tensor):
        torch.testing.assert_close(torch.as_tensor(got).to(torch.as_tensor(expected).dtype),
                                   torch.as_tensor(expected), atol=atol, rtol=rtol)
    elif isinstance(expected, float):
        if abs(got - expected) > atol + rtol * abs(expected):
            raise AssertionError(f"got {got}, expected {expected}")
    elif got != expected:
        raise AssertionError(f"got {got!r}, expected {expected!r}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    return repr(value)
