#!/usr/bin/env bash
# Create a kind cluster, build and load Shanhai's images, generate the secrets, apply the kind overlay, wait for
# every rollout and smoke-test through the gateway. Needs docker (with a running engine), kind, kubectl and openssl.
#   scripts/kind-up.sh            # whole flow
#   SHANHAI_KIND_CLUSTER=name     # cluster name (default shanhai)
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${SHANHAI_KIND_CLUSTER:-shanhai}
tag=dev
binaries=(gateway:gateway/cmd/gateway user:services/user/cmd/user order:services/order/cmd/order
  payment:services/payment/cmd/payment bridge:bridge/cmd/bridge bpf-agent:bpf/cmd/agent)

need() { command -v "$1" >/dev/null || { echo "kind-up: $1 is not installed ($2)" >&2; exit 1; }; }
need docker "https://docs.docker.com/engine/install/"
need kind "go install sigs.k8s.io/kind@v0.27.0"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need openssl "your package manager's openssl: it generates the secrets"
docker info >/dev/null 2>&1 || { echo "kind-up: docker answers but no engine is running" >&2; exit 1; }

# Every kubectl call names the cluster's context: kubectl's current context is switched only by `kind create cluster`,
# so on a run against a cluster that exists it is whatever the user last chose, and the secrets would be read from,
# and they and the overlay applied to, that cluster.
context=kind-$cluster
kubectl() { command kubectl --context "$context" "$@"; }

if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config deploy/k8s/kind-config.yaml
fi

# b64 [-d]: base64 on one line, or decoded, through openssl, which the keys need anyway: base64's own options are
# not portable (GNU's `-w0` is refused by macOS's, where the letter that decodes has changed between releases), and
# `openssl base64` without -A wraps at 64 characters and decodes no longer a line.
b64() { openssl base64 -A "$@"; }
# existing <namespace> <secret> <key>: the value stored there, empty if there is none; fails if kubectl does (an
# unreachable cluster must not read as "none" and get a new password).
existing() {
  local v
  v=$(kubectl -n "$1" get secret "$2" --ignore-not-found -o jsonpath="{.data.$3}") || return
  printf %s "$v" | b64 -d
}
# A cluster whose PostgreSQL was initialised before the services had roles of their own has no role to log in as
# (postgres-init.sh runs only on an empty volume): say so before the images are built, minutes that would be lost,
# rather than hand the services passwords no role has. (Read into variables: a kubectl failure inside [[ ]] would
# not stop the script.)
initialised=$(existing shanhai-infra shanhai-db postgres-password)
roles=$(existing shanhai-infra shanhai-db user-password)
if [[ -n $initialised && -z $roles ]]; then
  echo "kind-up: this cluster's PostgreSQL has no role per service (it predates them); scripts/kind-down.sh" \
    "then kind-up.sh recreates it, its databases emptied" >&2
  exit 1
fi

for entry in "${binaries[@]}"; do
  name=${entry%%:*} pkg=${entry#*:}
  docker build -f deploy/Dockerfile --build-arg BINARY="$pkg" -t "shanhai/$name:$tag" .
  kind load docker-image --name "$cluster" "shanhai/$name:$tag"
done

# Secrets are generated here, at deploy time, and never committed. Each is created or updated (create --dry-run |
# apply), so a run cut short half way through can simply be run again; a value an earlier run generated is kept
# (PostgreSQL was initialised with that password, tokens are signed with that key).
kubectl create namespace shanhai --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace shanhai-infra --dry-run=client -o yaml | kubectl apply -f -
# The values reach kubectl as files in a directory only this user can read, removed on exit, never as arguments:
# every user of the machine can read a process's argv (ps).
secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT
# secret <namespace> <name> <key>=<value>...: creates or updates that secret with these keys; keys added later with
# `kubectl patch` (the signing key's rotation, services/user/README.md "Keys") survive, as `kubectl apply` removes
# only keys it applied itself. A subshell, for its umask.
secret() (
  umask 077
  local dir kv from=()
  dir=$(mktemp -d "$secrets/$1.$2.XXXXXX")
  for kv in "${@:3}"; do
    printf %s "${kv#*=}" >"$dir/${kv%%=*}"
    from+=(--from-file="${kv%%=*}=$dir/${kv%%=*}")
  done
  kubectl -n "$1" create secret generic "$2" "${from[@]}" --dry-run=client -o yaml | kubectl apply -f -
)
key=$(existing shanhai shanhai-auth signing-key)
# A new key is PKCS #8 DER made by hand: the fixed 16-byte header every Ed25519 private key has (RFC 8410) and 32
# random bytes, its seed. `openssl genpkey -algorithm ed25519` made the same, but macOS's openssl (LibreSSL 3.3)
# answers "Algorithm Ed25519 not found".
[[ -n $key ]] || key=$({ printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20'; openssl rand 32; } | b64)
secret shanhai shanhai-auth signing-key="$key"
# PostgreSQL's superuser and each service's role (postgres-init.sh creates the roles on the first start), each with
# a password of its own: the services connected as the superuser, so one compromised service held every database.
# The platform's namespace gets only each service's URL; the superuser's password stays in shanhai-infra.
pw=$(existing shanhai-infra shanhai-db postgres-password)
[[ -n $pw ]] || pw=$(openssl rand -hex 24)
urls=() pws=()
for svc in user order payment; do
  p=$(existing shanhai-infra shanhai-db "$svc-password")
  [[ -n $p ]] || p=$(openssl rand -hex 24)
  pws+=("$svc-password=$p")
  urls+=("$svc=postgres://shanhai_$svc:$p@postgres.shanhai-infra.svc:5432/shanhai_$svc?sslmode=disable")
done
# PostgreSQL's copy first: the platform's URLs are made from it, on this run or the next if this one stops between.
secret shanhai-infra shanhai-db postgres-password="$pw" "${pws[@]}"
secret shanhai shanhai-db "${urls[@]}"
grafana=$(existing shanhai-infra shanhai-grafana admin-password)
[[ -n $grafana ]] || grafana=$(openssl rand -hex 12)
secret shanhai-infra shanhai-grafana admin-password="$grafana"

kubectl apply -k deploy/k8s/overlays/kind
# The namespaces with Deployments only: shanhai-system holds the eBPF agent's DaemonSet alone, and `kubectl wait
# ... deployment --all` on a namespace with none fails ("no matching resources found"), which ended every run here.
for ns in shanhai-infra shanhai; do
  kubectl -n "$ns" rollout status deployment --timeout=600s 2>/dev/null || true
  kubectl -n "$ns" wait --for=condition=Available deployment --all --timeout=600s
done
kubectl -n shanhai-system rollout status daemonset/bpf-agent --timeout=300s
# Each ConfigMap named by its content is a new object on every change, and apply leaves the one it replaced. Now that
# the rollouts are done, delete those the overlay no longer holds: apply with -l applies only what has the label (the
# current ConfigMaps, unchanged) and --prune deletes the rest of the labelled ones in the namespaces it applied to.
# ConfigMaps only (--prune-allowlist, kubectl 1.26+): kubectl's default list also prunes Secrets, Services, PVCs,
# workloads and Namespaces, where the label alone would stand between a labelled one and its deletion.
# A `kubectl rollout undo` to an older ReplicaSet then finds its ConfigMap gone: run this script on the older commit.
kubectl apply -k deploy/k8s/overlays/kind --prune -l shanhai.dev/content-named=true --prune-allowlist=core/v1/ConfigMap

# Smoke test through the gateway (kind maps node port 30080 to localhost:8080): the user service's key set is a route
# that needs no token (/api/v1/products answers 401 without one, which failed this script after a good deploy).
curl -fsS http://localhost:8080/.well-known/jwks.json >/dev/null
echo "kind-up: ready. Gateway http://localhost:8080"
echo "  Grafana: kubectl --context $context -n shanhai-infra port-forward svc/grafana 3000  → http://localhost:3000"
echo "  Jaeger:  kubectl --context $context -n shanhai-infra port-forward svc/jaeger 16686 → http://localhost:16686"
