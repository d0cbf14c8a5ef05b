#!/usr/bin/env bash
# Delete the kind cluster made by kind-up.sh (and with it every secret generated for it). Needs kind.
#   SHANHAI_KIND_CLUSTER=name     # cluster name (default shanhai)
set -euo pipefail

# Without kind there is no cluster of kind's to delete, but the shell's "kind: command not found" (status 127) said
# neither that nor what to do.
command -v kind >/dev/null || {
  echo "kind-down: kind is not installed, so there is no kind cluster here to delete (to install it: go install sigs.k8s.io/kind@v0.27.0)" >&2
  exit 1
}
kind delete cluster --name "${SHANHAI_KIND_CLUSTER:-shanhai}"
