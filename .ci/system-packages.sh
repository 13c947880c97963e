#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing (a fresh machine of
# this image has PostgreSQL 15; anything else comes from Debian's registry): PostgreSQL
# for the database tests, headless Chromium and its WebDriver (`chromium-driver`, at
# /usr/bin/chromedriver) for the report page test, and a CJK font (`fonts-wqy-zenhei`) so
# that charts and pages in Chinese (locale zh-CN) show characters, not boxes. Needs root to
# install; without root it only reports what is missing.
set -euo pipefail

need=()
have_pg() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
have_pg || need+=(postgresql)
id postgres >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
have_cjk_font() {
    [ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] \
        || [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]
}
have_cjk_font || need+=(fonts-wqy-zenhei)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (install them as root: apt-get install ${need[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
