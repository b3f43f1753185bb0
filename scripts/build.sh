#!/usr/bin/env bash
# Build the HTML book from the stored outputs (installs what it needs first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/vendor_js.sh
.venv/bin/jupyter-book build . -W -n --keep-going
echo "The book is at $(pwd)/_build/html/index.html"
