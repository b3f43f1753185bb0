"""Show `dlcore` source in a notebook, and remember which modules a chapter displayed.

Chapters print the code they teach with `show_source(fn)`. The runner reads
`DISPLAYED` from inside the kernel after a run and stamps the digest of each displayed
module, so the freshness test fails when code the page shows verbatim has changed since
the stored run.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

DISPLAYED: set[str] = set()  # names of the modules whose source a chapter has shown


def show_source(obj):
    """Display a function's or class's source, syntax-highlighted (IPython `Code`)."""
    from IPython.display import Code

    module = inspect.getmodule(obj)
    if module is None:
        raise TypeError(f"show_source: cannot find the module of {obj!r}")
    DISPLAYED.add(module.__name__)
    return Code(inspect.getsource(obj), language="python")


def module_digest(path: str | Path) -> str:
    """sha256 (hex) of a source file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def loaded_module_digests() -> dict[str, str]:
    """{module name: digest of its file} for every `dlcore` module imported here."""
    digests = {}
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (name == "dlcore" or name.startswith("dlcore.")) and file:
            digests[name] = module_digest(file)
    return digests


def current_module_digests(names) -> dict[str, str | None]:
    """Today's digest of each named `dlcore` module's file (None when it is gone)."""
    import importlib.util

    found = {}
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec else None
        found[name] = (
            module_digest(origin) if origin and Path(origin).exists() else None
        )
    return found
