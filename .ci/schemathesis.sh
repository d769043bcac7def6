#!/usr/bin/env bash
# schemathesis against the API's own /openapi.json (uvicorn over an embedded, migrated
# Postgres), without and with the secrets; fails on any check failure, or if a single row
# changed during the run without the secrets. ~1.5 minutes on 2 cores (20 examples: 51 s).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m tests.support.api_fuzz --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}"
