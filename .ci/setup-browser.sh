#!/usr/bin/env bash
# Installs what tests/browser needs: Debian's chromium and chromium-driver (selenium drives
# them; nothing is downloaded by selenium itself). Idempotent. Never fails the CI run: when
# the packages cannot be installed it says so loudly and exits 0, and the browser tests
# skip with that reason (which tests/skips.py's gate reports in CI).
set -u

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

warn() {
    echo "################################################################################" >&2
    echo "# .ci/setup-browser.sh: $*" >&2
    echo "# The dashboard's browser tests (tests/browser) will be SKIPPED." >&2
    echo "################################################################################" >&2
}

if have; then
    echo "setup-browser: chromium and chromedriver already installed ($(command -v chromium))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    warn "apt-get is not available; install chromium and chromium-driver by hand"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        warn "not root and no password-less sudo; cannot apt-get install chromium"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq; then
    warn "apt-get update failed"
    exit 0
fi
if ! $SUDO apt-get install -y -qq chromium chromium-driver; then
    warn "apt-get install chromium chromium-driver failed"
    exit 0
fi
if have; then
    echo "setup-browser: installed $(chromium --version 2>/dev/null || echo chromium)"
else
    warn "chromium or chromedriver is still missing after apt-get install"
fi
exit 0
