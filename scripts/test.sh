#!/usr/bin/env bash
# Run every test: dlcore unit tests, nbval (smoke profile) on every notebook in _toc.yml,
# freshness of the stored outputs, the HTML build and a headless-Chromium check of its pages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/vendor_js.sh
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ -z "${DLCORE_DATA:-}" ] && [ -d ../shared/data ]; then
  export DLCORE_DATA=$(cd ../shared/data && pwd)
fi
export DLCORE_PROFILE=smoke
export OMP_NUM_THREADS=1  # two pytest workers on two cores: one thread each
mapfile -t notebooks < <(.venv/bin/python -c "from pathlib import Path; from dlcore.runner import toc_notebooks; print('\n'.join(str(p.relative_to(Path.cwd())) for p in toc_notebooks(Path.cwd())))")
.venv/bin/python -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env tests "${notebooks[@]}" "$@"
