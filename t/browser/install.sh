#!/usr/bin/env bash
# Installs what the browser tests (t/080-browser.t, t/085-lighthouse.t)
# need, and nothing when it is all there already:
#   - Debian's chromium (the browser Playwright drives; Playwright never
#     downloads one of its own here) and fonts-noto-cjk (Noto Sans CJK JP,
#     the font family the Digital Agency tokens ask for, so Japanese text
#     is laid out at its real width in the reflow checks);
#   - the npm packages pinned in package-lock.json, by "npm ci".
# apt-get needs root; npm ci does not.  Called by ./build.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHROMIUM=${SHINSEI_CHROMIUM:-/usr/bin/chromium}

log() { printf '%s\n' "t/browser/install.sh: $*" >&2; }
die() { log "$*"; exit 1; }

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- Debian packages ---------------------------------------------------------

missing=()
if [ ! -x "$CHROMIUM" ]; then
    missing+=(chromium)
fi
if ! installed fonts-noto-cjk; then
    missing+=(fonts-noto-cjk)
fi
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; run as root: $0"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -x "$CHROMIUM" ] || die "$CHROMIUM is still missing after installing chromium"
fi

# --- Node and the npm packages ------------------------------------------------

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "node and npm are needed (Node 20 or later)"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] \
    || die "Node $(node --version) is too old: playwright-core needs Node 20 or later"

# npm ci only when node_modules is not what the lock file pins
stamp="$HERE/node_modules/.shinsei-installed"
want="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1) node-$node_major"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
log "npm ci in t/browser"
(
    cd "$HERE"
    # playwright-core downloads no browser, but be sure of it
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
        npm ci --no-audit --no-fund --loglevel=error >/dev/null
) || die "npm ci failed in $HERE"
echo "$want" >"$stamp"
log "installed $(cd "$HERE" && node -p 'Object.entries(require("./package.json").dependencies).map(([k, v]) => k + "@" + v).join(" ")')"
