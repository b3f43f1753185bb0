#!/usr/bin/env bash
# Fetch the JavaScript the HTML book serves itself (MathJax, Jupyter widgets) into _vendor/,
# so no page loads anything from the network. Idempotent; needs npm and its registry.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f _vendor/.complete ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent mathjax@3.2.2 @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.4 >/dev/null)
for f in "$tmp"/*.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
out="$tmp/_vendor"
mkdir -p "$out/mathjax/output/chtml/fonts" "$out/widgets"
cp "$tmp"/mathjax-3.2.2/package/es5/tex-mml-chtml.js "$out/mathjax/"
cp -r "$tmp"/mathjax-3.2.2/package/es5/output/chtml/fonts/woff-v2 "$out/mathjax/output/chtml/fonts/"
cp "$tmp"/jupyter-widgets-html-manager-1.0.6/package/dist/embed-amd.js "$out/widgets/"
cp "$tmp"/jupyter-widgets-html-manager-1.0.6/package/dist/*.woff2 "$out/widgets/"
cp "$tmp"/requirejs-2.3.4/package/require.js "$out/widgets/"
touch "$out/.complete"
rm -rf _vendor && mv "$out" _vendor
echo "vendored JavaScript into _vendor/ ($(du -sh _vendor | cut -f1))"
