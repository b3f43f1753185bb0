"""The HTML book: builds with warnings as errors, renders its math, loads nothing from
the network, shows each chapter's stamp, and fits its code in the column."""

import html as html_lib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ROOT

LOADING_ATTRIBUTES = {
    "script": "src",
    "img": "src",
    "iframe": "src",
    "link": "href",
    "source": "src",
    "video": "src",
    "audio": "src",
    "embed": "src",
    "object": "data",
}
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


class LoadCollector(HTMLParser):
    """Collects the URLs a page loads (scripts, styles, images, frames), not the links
    it shows."""

    def __init__(self):
        super().__init__()
        self.loads = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        key = LOADING_ATTRIBUTES.get(tag)
        if (
            key
            and attrs.get(key)
            and (tag != "link" or attrs.get("rel") not in ("canonical", "alternate"))
        ):
            self.loads.append(attrs[key])
        for value in re.findall(r"url\(['\"]?([^)'\"]+)", attrs.get("style") or ""):
            self.loads.append(value)


def remote_loads(html: str) -> list[str]:
    parser = LoadCollector()
    parser.feed(html)
    return [url for url in parser.loads if REMOTE.match(url)]


def visible_text(dom: str) -> str:
    return re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S | re.I)


@pytest.fixture(scope="module")
def html_dir():
    out = Path(tempfile.mkdtemp(prefix="book-"))
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [
            str(jupyter_book),
            "build",
            str(ROOT),
            "--path-output",
            str(out),
            "-W",
            "-n",
            "--keep-going",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        "book build failed (warnings are errors):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    yield out / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)


def pages(html_dir: Path) -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"(?:file|root):\s*(\S+)", toc)
    return [html_dir / f"{f}.html" for f in files]


def test_every_toc_entry_has_a_page(html_dir):
    missing = [p for p in pages(html_dir) if not p.exists()]
    assert not missing


def test_pages_and_styles_load_nothing_remote(html_dir):
    for page in pages(html_dir) + [html_dir / "index.html", html_dir / "search.html"]:
        assert remote_loads(page.read_text(encoding="utf-8")) == [], page.name
    for css in html_dir.glob("_static/**/*.css"):
        assert not re.search(
            r"url\(['\"]?https?://|@import\s+['\"]?(url\()?['\"]?https?://",
            css.read_text(errors="ignore"),
        ), css


def test_math_is_rendered_offline_in_chromium(html_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, (
        "Chromium is needed for this test (scripts/test.sh installs it with apt-get)"
    )
    with_math = [
        p for p in pages(html_dir) if 'class="math' in p.read_text(encoding="utf-8")
    ]
    assert with_math, "no page has math: the check would prove nothing"
    for page in with_math:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "--virtual-time-budget=10000",
                    "--dump-dom",
                    page.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        assert "<mjx-container" in dom, f"{page.name}: MathJax did not render"
        text = visible_text(dom)
        assert "\\(" not in text and "\\[" not in text and "$$" not in text, (
            f"{page.name}: raw TeX left"
        )
        assert remote_loads(dom) == [], (
            f"{page.name}: the rendered page loads remote resources"
        )


def test_remote_loads_detector_is_not_blind():
    html = (
        '<script src="https://cdn.example/x.js"></script>'
        '<a href="https://ok.example">link</a><img src="local.png">'
    )
    assert remote_loads(html) == ["https://cdn.example/x.js"]


WIDTH_PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const code = ['div.cell_input div.highlight pre',
                'div.output.text_html div.highlight pre'].join(', ');
  const pres = [...document.querySelectorAll(code)];
  const longest = t => t.split('\\n').reduce((a, b) => a.length > b.length ? a : b);
  const wide = pres.filter(p => p.scrollWidth > p.clientWidth + 1)
                   .map(p => longest(p.textContent));
  const probe = document.createElement('span');
  probe.textContent = 'x'.repeat(88);
  probe.style.whiteSpace = 'pre';
  probe.style.position = 'absolute';
  if (pres.length) pres[0].appendChild(probe);
  document.body.setAttribute('data-width', JSON.stringify({
    blocks: pres.length, wide: wide.slice(0, 3),
    column: pres.length ? pres[0].clientWidth : 0,
    chars88: probe.getBoundingClientRect().width}));
}, 300));
</script>"""


def chapter_pages(html_dir: Path) -> list[Path]:
    return [p for p in pages(html_dir) if p.with_suffix("").name[:2].isdigit()]


def test_code_fits_the_column_at_1280px_and_pages_show_their_stamp(html_dir):
    """The book's CSS gives code 88 characters at 1280 px; ruff keeps code within 88."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed (scripts/test.sh installs it with apt-get)"
    chapters = chapter_pages(html_dir)
    assert len(chapters) >= 14
    for page in chapters:
        text = page.read_text(encoding="utf-8")
        assert 'class="dlcore-stamp"' in text and "modules digest" in text, page.name
        probe = page.with_name(f"_probe_{page.name}")
        probe.write_text(
            text.replace("</body>", WIDTH_PROBE + "</body>"), encoding="utf-8"
        )
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,2000",
                 "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120,
            ).stdout  # fmt: skip
        probe.unlink()
        found = re.search(r'data-width="([^"]*)"', dom)
        assert found, f"{page.name}: the width probe did not run"
        width = json.loads(html_lib.unescape(found.group(1)))
        assert width["blocks"] > 0, page.name
        assert width["chars88"] <= width["column"], (page.name, width)
        assert width["wide"] == [], f"{page.name}: code scrolls sideways: {width}"
