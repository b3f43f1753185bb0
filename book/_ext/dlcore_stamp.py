"""Sphinx extension: a footer on every chapter page with the stamp of its stored run,
and the book's own CSS (a code column wide enough for 88 characters).

The stamp is `metadata["dlcore"]` of the page's notebook, written by `dlcore-run`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

STATIC = Path(__file__).parent / "static"


def stamp_footer(stamp: dict) -> str:
    """The footer's HTML for one stamp (see `dlcore.runner`)."""
    digest = stamp.get("dlcore_digest", "")[:12] or "none"
    when = stamp.get("executed_at", "?").replace("T", " ").replace("+00:00", " UTC")
    parts = [
        f"dlcore {stamp.get('dlcore_version', '?')} (modules digest {digest})",
        f"torch {stamp.get('torch_version', '?')}",
        f"{stamp.get('device', '?')}",
        f"profile {stamp.get('profile', '?')}",
        f"run {when}",
        f"wall time {stamp.get('wall_seconds', '?')} s",
    ]
    text = " · ".join(html.escape(str(p)) for p in parts)
    return (
        '<div class="dlcore-stamp"><strong>Outputs on this page</strong> come from one '
        f"complete stamped run: {text}.</div>"
    )


def add_stamp(app, pagename, templatename, context, doctree) -> None:
    notebook = Path(app.srcdir) / f"{pagename}.ipynb"
    if doctree is None or not notebook.exists():
        return
    stamp = json.loads(notebook.read_text(encoding="utf-8"))["metadata"].get("dlcore")
    if stamp:
        context["body"] = context.get("body", "") + stamp_footer(stamp)


def add_static_path(app) -> None:
    app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("builder-inited", add_static_path)
    app.connect("html-page-context", add_stamp)
    app.add_css_file("dlcore.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
