#!/usr/bin/env bash
# The browser SDKs' bundles for tests/test_browser.py, from the npm registry at the
# versions package-lock.json holds. node_modules/ is not committed.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
for bundle in @customerio/cdp-analytics-browser @segment/analytics-next; do
  test -f "node_modules/$bundle/dist/umd/index.js" || { echo "no $bundle bundle" >&2; exit 1; }
done
echo "browser SDKs: $(node -p "['@customerio/cdp-analytics-browser','@segment/analytics-next'].map(n => n + ' ' + require('./node_modules/' + n + '/package.json').version).join(', ')")"
