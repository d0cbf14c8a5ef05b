#!/usr/bin/env bash
# Delete the kind cluster made by kind-up.sh (and with it every secret generated for it).
set -euo pipefail
kind delete cluster --name "${SHANHAI_KIND_CLUSTER:-shanhai}"
