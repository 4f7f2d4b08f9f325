#!/bin/sh
# test/client/install-dynalite.sh: installs dynalite (a DynamoDB-compatible
# server on Node.js, from the npm registry) for the client suite's dynamodb
# group, into a cache directory outside the checkout:
#   ${STORAGE_DYNALITE_DIR:-/var/cache/storage-test/dynalite}/node_modules/dynalite/cli.js
# Run as root by test/lib.sh (install_deps); does nothing when it is there.
#
# dynalite 4 needs Node.js >= 20.  Machines of this project's kind ship
# Node.js 20 and npm (NodeSource build, /usr/bin/node); a plain Debian 12
# has Node.js 18 at most (apt's nodejs), where dynalite 4 does not install.
# Then nothing is installed, and test/client/run.sh reports the dynamodb
# group as skipped with that reason (never as passed).
set -u

dir=${STORAGE_DYNALITE_DIR:-/var/cache/storage-test/dynalite}
version=4.0.0
cli="$dir/node_modules/dynalite/cli.js"

if [ -f "$cli" ] && grep -q "\"version\": \"$version\"" "$dir/node_modules/dynalite/package.json" 2>/dev/null; then
	exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install-dynalite: no node/npm on this machine: the dynamodb group will be skipped"
	exit 0
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
	echo "install-dynalite: Node.js $(node --version) is older than 20 (dynalite $version needs >= 20): the dynamodb group will be skipped"
	exit 0
fi
echo "== installing dynalite@$version into $dir"
mkdir -p "$dir"
# its own npm cache, so nothing lands in root's home; no audit/fund calls
if ! npm install --prefix "$dir" --cache "$dir/.npm-cache" --no-audit --no-fund \
	--no-save --loglevel=error "dynalite@$version" >"$dir/install.log" 2>&1; then
	cat "$dir/install.log"
	echo "install-dynalite: npm install failed: the dynamodb group will be skipped"
	exit 0
fi
chmod -R a+rX "$dir"
