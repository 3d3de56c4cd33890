#!/usr/bin/env bash
# Refresh the portal's one vendored UI file (Preact + htm, a single ES module) from the npm
# registry. Needs curl, tar and sha256sum; never node or npm. Usage: scripts/vendor-portal.sh [VERSION]
set -euo pipefail

VERSION="${1:-3.1.1}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$HERE/servers/portal/static/vendor"
TARBALL="https://registry.npmjs.org/htm/-/htm-${VERSION}.tgz"
FILE="package/preact/standalone.module.js"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
curl -fsSL "$TARBALL" -o "$tmp/htm.tgz"
tar -xzf "$tmp/htm.tgz" -C "$tmp" "$FILE" package/LICENSE
mkdir -p "$DEST"
cp "$tmp/$FILE" "$DEST/htm-preact-standalone.mjs"
cp "$tmp/package/LICENSE" "$DEST/LICENSE-htm"
sum="$(sha256sum "$DEST/htm-preact-standalone.mjs" | cut -d' ' -f1)"
tarsum="$(sha256sum "$tmp/htm.tgz" | cut -d' ' -f1)"

cat > "$DEST/VERSIONS.md" <<MD
# Vendored browser files

Refreshed by \`scripts/vendor-portal.sh\` from the npm registry; no build step, no node needed.

| File | Package | Version | Licence | sha256 |
| --- | --- | --- | --- | --- |
| htm-preact-standalone.mjs | [htm](https://www.npmjs.com/package/htm) \`preact/standalone.module.js\` (htm + Preact + hooks in one ES module) | ${VERSION} | Apache-2.0 (htm, see LICENSE-htm); bundled Preact is MIT | ${sum} |

Source tarball: ${TARBALL} (sha256 ${tarsum}).
MD
echo "vendored htm ${VERSION}: $DEST/htm-preact-standalone.mjs ($sum)"
