#!/usr/bin/env bash
# make undeploy: removes the install from the cluster of the current kubeconfig (README
# "Operations" → "Uninstall"). Everything `make deploy` applied goes (its three namespaces with the
# Secrets, ConfigMaps and Leases made in them, the manager's credential copies in
# connectors-credentials included, webhook configurations, admission policies,
# ClusterRoles and bindings, the CSIDriver, trust-manager Bundles), except, by default, the
# Connector CRD: deleting it deletes every Connector in the cluster.
#   DELETE_CRD=true  also delete the CRD, and with it every Connector.
#   FORCE=true       go on although workloads the webhook mutated still run (see below).
#   WAIT=false       do not wait for the namespaces to finish terminating (by default it waits,
#                    so the node agents have removed their files from the nodes when it returns).
#   OVERLAY          as for make deploy: the overlay that was applied, if any (names are the same).
# Pods the webhook mutated (label connectors.cpaas.io/proxy-injected=true) and unfinished Jobs
# whose template it mutated depend on the install: their rewritten images pull from the node
# listener and their CSI volumes are rendered and refreshed by the driver. It lists them and
# refuses unless FORCE=true.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUBECTL=${KUBECTL:-kubectl}
MARK=connectors.cpaas.io/proxy-injected
CRD=connectors.connectors.alauda.io
base=config/default
overlay=${OVERLAY:-config/overlays/images}
overlay=${overlay%/}
case "$overlay" in config/overlays/*) ;; *) echo "OVERLAY=$overlay: want a folder under config/overlays" >&2; exit 2;; esac
if [ -f "$overlay/kustomization.yaml" ]; then base=$overlay; fi
bool() { case "${1:-false}" in true|1|yes) echo true;; false|0|no|"") echo false;; *) echo "want true or false, got '$1'" >&2; exit 2;; esac; }
delete_crd=$(bool "${DELETE_CRD:-false}")
force=$(bool "${FORCE:-false}")
wait=$(bool "${WAIT:-true}")

# Workloads that still depend on the install.
pods=$("$KUBECTL" get pods -A -l "$MARK=true" --field-selector=status.phase!=Succeeded,status.phase!=Failed \
  -o go-template='{{range .items}}{{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}{{end}}')
jobs=$("$KUBECTL" get jobs -A -o go-template='{{range .items}}{{if not .status.completionTime}}{{$ns := .metadata.namespace}}{{$name := .metadata.name}}{{with .spec.template.metadata.labels}}{{if index . "'"$MARK"'"}}{{$ns}}/{{$name}}{{"\n"}}{{end}}{{end}}{{end}}{{end}}')
if [ -n "$pods$jobs" ]; then
  {
    echo "warning: workloads mutated by the connectors webhook still depend on the install:"
    [ -z "$pods" ] || { echo "  $(grep -c . <<<"$pods") pod(s) (running or pending):"; sed 's/^/    /' <<<"$pods"; }
    [ -z "$jobs" ] || { echo "  $(grep -c . <<<"$jobs") unfinished job(s) whose pod template was mutated:"; sed 's/^/    /' <<<"$jobs"; }
    echo "  Once the install is gone their rewritten images (127.0.0.1:5050/...) stop pulling on container"
    echo "  restarts and new pods, their CSI volumes (connectors-csi) stop refreshing and cannot be mounted"
    echo "  for new pods, and the kubelet cannot unmount them when they are deleted. Remove the"
    echo "  connectors.cpaas.io/connector annotation and re-apply (delete Jobs), or run with FORCE=true."
  } >&2
  if [ "$force" != true ]; then
    echo "refusing to uninstall (FORCE=true to go on)" >&2
    exit 1
  fi
  echo "FORCE=true: uninstalling anyway" >&2
fi

# The rendered install, split by kind: admission first (so nothing refuses while the rest goes),
# then everything else but the CRD, then the CRD when asked.
rendered=$(mktemp)
trap 'rm -f "$rendered" "$rendered".*' EXIT
"$KUBECTL" kustomize "$base" > "$rendered"
# pick FILE KIND-REGEX [invert]: the documents of FILE whose top-level kind matches (or not).
pick() {
  awk -v re="^kind: ($2)\$" -v invert="${3:-}" '
    function flush() { if (doc != "" && ((match_ && invert == "") || (!match_ && invert != ""))) printf "---\n%s", doc; doc = ""; match_ = 0 }
    /^---$/ { flush(); next }
    { doc = doc $0 "\n"; if ($0 ~ re) match_ = 1 }
    END { flush() }' "$1"
}
admission='MutatingWebhookConfiguration|ValidatingWebhookConfiguration|ValidatingAdmissionPolicyBinding|ValidatingAdmissionPolicy'
pick "$rendered" "$admission" > "$rendered.admission"
pick "$rendered" "$admission|CustomResourceDefinition" invert > "$rendered.rest"
pick "$rendered" CustomResourceDefinition > "$rendered.crd"
echo "deleting the install of $base (the CRD $( [ "$delete_crd" = true ] && echo "too, and every Connector" || echo "stays, with every Connector: DELETE_CRD=true deletes them" ))" >&2
"$KUBECTL" delete --ignore-not-found -f "$rendered.admission"
"$KUBECTL" delete --ignore-not-found --wait="$wait" -f "$rendered.rest"
if [ "$delete_crd" = true ]; then
  "$KUBECTL" delete --ignore-not-found --wait="$wait" -f "$rendered.crd"
fi

# Bindings someone made to the product's ClusterRoles (e.g. Prometheus to
# connectors-metrics-reader) are theirs: named, not deleted.
roles=$(pick "$rendered" ClusterRole | sed -n 's/^  name: //p' | sort -u | paste -sd'|' -)
if [ -n "$roles" ]; then
  left=$("$KUBECTL" get clusterrolebindings,rolebindings -A --no-headers \
    -o custom-columns=KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name,ROLE:.roleRef.name 2>/dev/null | awk -v re="^($roles)\$" '$4 ~ re')
  if [ -n "$left" ]; then
    echo "note: these bindings of your own still name the deleted ClusterRoles; delete them if unused:" >&2
    sed 's/^/  /' <<<"$left" >&2
  fi
fi
