#!/usr/bin/env bash
# Refresh the graph library the docs site ships (sqlorch/docs/assets/vendor/): cytoscape,
# MIT licensed, pinned here. Bump VERSION, run this, open `sqlorch docs` output, commit.
# Needs npm (only `npm pack`, which downloads the published tarball; nothing is installed).
set -euo pipefail
VERSION="${1:-3.35.0}"
cd "$(dirname "$0")/.."
dest=sqlorch/docs/assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "cytoscape@$VERSION" >/dev/null && tar xzf "cytoscape-$VERSION.tgz")
grep -q '"license": "MIT"' "$work/package/package.json" || { echo "cytoscape $VERSION is not MIT licensed" >&2; exit 1; }
cp "$work/package/dist/cytoscape.min.js" "$dest/cytoscape.min.js"
cp "$work/package/LICENSE" "$dest/cytoscape.LICENSE"
echo "$VERSION" >"$dest/cytoscape.VERSION"
echo "cytoscape $VERSION vendored into $dest ($(wc -c <"$dest/cytoscape.min.js") bytes)"
