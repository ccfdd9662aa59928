#!/usr/bin/env bash
# Manual, opt-in check of `llmtraces release deposit` against Zenodo's sandbox
# (https://sandbox.zenodo.org). NEVER run in CI: it needs the network and a sandbox token, and
# it creates (and, with PUBLISH=1, publishes) records there. The sandbox can be wiped at any
# time and its DOIs (prefix 10.5072) resolve nowhere, so nothing here is permanent.
#
# What the loopback tests (tests/test_release_deposit.py, tests/zenodo_server.py) cannot
# confirm, and this script does, each step printing OK or FAILED:
#   1. the real API accepts the metadata build writes: upload_type, creators, the HTML
#      description, licence ids (cc-by-4.0, apache-2.0, mit), related_identifiers relations
#      (isDerivedFrom, references) and the references list;
#   2. a key starting with a dot (.zenodo.json, listed in MD5SUMS) is accepted by the bucket,
#      and every md5 the bucket answers equals MD5SUMS;
#   3. the real rate-limit headers (X-RateLimit-Limit/Remaining/Reset) on an answer;
#   4. a rerun of the same command resumes the draft instead of making a second one;
#   5. (PUBLISH=1) publishing gives a 10.5072 DOI, the record API lists every file with its
#      md5, and `llmtraces fetch` through the Zenodo backend gets equal bytes;
#   6. (PUBLISH=1) --new-version-of: newversion, the deletion of every inherited file (one
#      report says legacy newversion fails with "Please remove all files first"), the
#      metadata PUT without publication_date, and the second publication.
# What only a person can judge: the landing page (description HTML, licence, related works,
# the file table). The script prints the URLs to look at.
#
# Usage:
#   export ZENODO_TOKEN=...      # a *sandbox* token (deposit:write, deposit:actions scopes)
#   ZENODO_SANDBOX_OK=1 [PUBLISH=1] benchmarks/zenodo_sandbox.sh [RELEASE_DIR]
# Without RELEASE_DIR it builds one from $SOURCES (default azure-llm-2023,mooncake; fetched
# or taken from the cache) into a temporary folder. The token is read from the environment
# by llmtraces and by the Python checks below; it is never printed or passed as an argument.
set -euo pipefail

if [[ "${ZENODO_SANDBOX_OK:-}" != "1" ]]; then
    echo "zenodo_sandbox.sh: opt-in only (it writes to sandbox.zenodo.org); set" \
         "ZENODO_SANDBOX_OK=1 and a sandbox ZENODO_TOKEN to run it" >&2
    exit 2
fi
if [[ -z "${ZENODO_TOKEN:-}" ]]; then
    echo "zenodo_sandbox.sh: set ZENODO_TOKEN to a token made at" \
         "https://sandbox.zenodo.org/account/settings/applications/tokens/new/" >&2
    exit 2
fi
# ZENODO_SANDBOX_URL points the script at another server in Zenodo's shape (to try the script
# itself against tests/zenodo_server.py on 127.0.0.1).
SANDBOX=${ZENODO_SANDBOX_URL:-https://sandbox.zenodo.org}
TARGET=(--sandbox)
if [[ -n "${ZENODO_SANDBOX_URL:-}" ]]; then TARGET=(--zenodo-url "$SANDBOX"); fi
SOURCES=${SOURCES:-azure-llm-2023,mooncake}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/llmtraces-sandbox.XXXXXX")
echo "working in $WORK (kept for inspection)"
PASS=0
FAIL=0
ok() { echo "OK      $*"; PASS=$((PASS + 1)); }
bad() { echo "FAILED  $*"; FAIL=$((FAIL + 1)); }

# A GET of the sandbox API as JSON, the token from the environment (never on a command line).
api() {
    python - "$SANDBOX$1" <<'EOF'
import json, os, sys
import requests
r = requests.get(sys.argv[1], timeout=60,
                 headers={"Authorization": "Bearer " + os.environ["ZENODO_TOKEN"]})
limits = {k: v for k, v in r.headers.items() if k.lower().startswith("x-ratelimit")}
print(json.dumps({"status": r.status_code, "limits": limits,
                  "body": r.json() if r.headers.get("content-type", "").startswith(
                      "application/json") else None}))
EOF
}

build() {  # build VERSION -> prints the release folder
    llmtraces release build --sources "$SOURCES" --version "$1" --date 2026-12-01 \
        -o "$WORK/dist-$1" >&2
    echo "$WORK/dist-$1/llmtraces-traces-$1"
}

DIR=${1:-}
if [[ -z "$DIR" ]]; then
    DIR=$(build 1.0.0)
fi
echo "release folder: $DIR"
llmtraces release verify "$DIR"
llmtraces release deposit "$DIR" "${TARGET[@]}" --dry-run

# 1-2. The draft: metadata accepted, every file uploaded with the md5 MD5SUMS gives.
if llmtraces release deposit "$DIR" "${TARGET[@]}" 2>"$WORK/deposit.log"; then
    ok "draft deposited (metadata of .zenodo.json accepted by the real API)"
else
    bad "draft deposit: $(tail -1 "$WORK/deposit.log")"
    exit 1
fi
DEP=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['deposition_id'])" \
      "$DIR/.deposit-state.json")
api "/api/deposit/depositions/$DEP" >"$WORK/draft.json"
if python - "$WORK/draft.json" "$DIR/MD5SUMS" <<'EOF'
import json, sys
draft = json.load(open(sys.argv[1]))["body"]
remote = {f["filename"]: f["checksum"].removeprefix("md5:") for f in draft["files"]}
local = dict(reversed(line.split("  ", 1)) for line in open(sys.argv[2]).read().splitlines())
missing = {k for k in local if remote.get(k) != local[k]}
sys.exit(f"md5 differs or missing: {sorted(missing)}" if missing else 0)
EOF
then ok "bucket holds every file of MD5SUMS (.zenodo.json included) with the same md5"
else bad "bucket files against MD5SUMS"; fi

# 3. Rate-limit headers as the real service sends them.
LIMITS=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['limits'])" \
         "$WORK/draft.json")
if [[ "$LIMITS" == *"eset"* ]]; then ok "rate-limit headers: $LIMITS"
else bad "no X-RateLimit-Reset header in $LIMITS"; fi

# 4. A rerun resumes the same draft.
llmtraces release deposit "$DIR" "${TARGET[@]}" 2>"$WORK/rerun.log"
if grep -q "resuming draft deposition $DEP" "$WORK/rerun.log"; then ok "rerun resumed draft $DEP"
else bad "rerun did not resume draft $DEP: $(tail -1 "$WORK/rerun.log")"; fi
echo "look at the draft page: $SANDBOX/uploads/$DEP"

if [[ "${PUBLISH:-}" != "1" ]]; then
    echo "PUBLISH=1 not set: the draft is left unpublished (delete it on the sandbox page)"
    echo "passed $PASS, failed $FAIL"
    exit $((FAIL > 0))
fi

# 5. Publish, the DOI prefix, and a fetch round trip through the Zenodo backend.
llmtraces release deposit "$DIR" "${TARGET[@]}" --publish --yes | tee "$WORK/publish.out"
if grep -q "^DOI 10.5072/" "$WORK/publish.out"; then ok "published with a 10.5072 DOI"
else bad "DOI prefix: $(grep DOI "$WORK/publish.out" || true)"; fi
KEY=$(cd "$DIR" && ls ./*.parquet | head -1 | sed 's|^\./||')
mkdir -p "$WORK/registry"
cat >"$WORK/registry/sandbox-rt.toml" <<EOF
id = "sandbox-rt"
name = "One file of the sandbox record"
description = "Round trip of llmtraces release deposit."
homepage = "$SANDBOX/records/$DEP"
format = "auto"

[licence]
spdx = "CC-BY-4.0"
url = "https://creativecommons.org/licenses/by/4.0/"
redistributable = true
commercial_use = true
attribution = "sandbox check"

[citation]
text = "sandbox check"
bibtex = "@misc{s, title={s}}"

[time]
kind = "relative"
native_format = "arrival_us"
resolution = "1us"
origin = "first row"

[traces.t]
description = "one file"

[traces.t.file]
name = "$KEY"
url = "$SANDBOX/records/$DEP/files/$KEY?download=1"
zenodo = { record = "$DEP", key = "$KEY" }
EOF
if LLMTRACES_HOME="$WORK/home" LLMTRACES_REGISTRY="$WORK/registry" \
        LLMTRACES_ZENODO_URL="$SANDBOX" llmtraces fetch sandbox-rt -q &&
        cmp -s "$DIR/$KEY" "$(find "$WORK/home" -name "$KEY" -type f | head -1)"; then
    ok "llmtraces fetch of $KEY from the published record gives equal bytes"
else bad "fetch round trip of $KEY"; fi
echo "look at the record page: $SANDBOX/records/$DEP"

# 6. A new version: inherited files deleted, metadata resent, published.
V2=$(build 1.0.1)
if llmtraces release deposit "$V2" "${TARGET[@]}" --new-version-of "$DEP" --publish --yes \
        2>"$WORK/newversion.log" | tee "$WORK/newversion.out"; then
    ok "new version of $DEP published ($(grep -c '^deleted ' "$WORK/newversion.log" || true)" \
       "inherited files deleted first)"
else bad "new version: $(tail -1 "$WORK/newversion.log")"; fi
echo "passed $PASS, failed $FAIL"
exit $((FAIL > 0))
