#!/usr/bin/env bash
# The Helm chart (charts/stash-webhook) renders the objects the kustomize overlays render
# (manifests/), for each way of installing: `helm template` with the values that match an overlay,
# against `kubectl kustomize` of that overlay, compared as sets of objects (JSON, keys sorted), so
# that a change to manifests/ not made in the chart too (or the reverse) fails here.
#
#   bash tests/chart/compare.sh
#
# Intended differences, and only these, are taken out before comparing:
#   - the chart does not create its Namespace (`helm install --create-namespace` does, and
#     `helm uninstall` leaves it), so the kustomize side's Namespace object is dropped;
#   - the chart labels every object with Helm's app.kubernetes.io/instance,
#     app.kubernetes.io/managed-by and helm.sh/chart as well (metadata.labels only, never in
#     selectors), so those three are dropped from the chart side's metadata.labels.
# Secret data is compared without whitespace (kustomize wraps long base64 values).
#
# Environment:
#   STASH_WEBHOOK_BIN  the stash-webhook binary whose `certs` command makes the self-signed files
#                      (built with cargo when unset, as tests/e2e/run.sh does)
#   HELM               the helm binary (default: the one tests/e2e/current.sh builds, built if missing)
#   KUBECTL            the kubectl that runs kustomize (default: kubectl on PATH)
#
# Prints `same objects: ...` for each pair, or `different objects: ...` with a unified diff of the
# two renderings; exits 1 if any pair differs or cannot be rendered.

set -uo pipefail

CHART_TEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CHART_TEST_DIR/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e/apiserver.sh
source "$REPO/tests/e2e/apiserver.sh"

die() {
  echo "different objects: cannot compare: $*"
  exit 1
}

e2e_webhook_bin "$REPO" || die "no stash-webhook binary"
e2e_install_packages jq yq || die "cannot install jq and yq"
if [[ -z ${HELM:-} ]]; then
  e2e_build_current || die "cannot build helm"
  HELM=$E2E_CURRENT_HELM
fi
KUBECTL=${KUBECTL:-kubectl}
command -v "$KUBECTL" >/dev/null || die "no kubectl"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stash-webhook-chart.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT

# A copy of manifests/ with the self-signed overlay's generated/ made by the certs command, as an
# admin would make it.
cp -r "$REPO/manifests" "$WORK/manifests"
GENERATED=$WORK/manifests/overlays/self-signed/generated
rm -rf "$GENERATED"
"$WEBHOOK_BIN" certs --service stash-webhook --namespace stash-system --out "$GENERATED" \
  >"$WORK/certs.log" 2>&1 || die "stash-webhook certs failed: $(cat "$WORK/certs.log")"
SELF_SIGNED=(--set certificate.source=self-signed
  --set-file "certificate.selfSigned.caCrt=$GENERATED/ca.crt"
  --set-file "certificate.selfSigned.tlsCrt=$GENERATED/tls.crt"
  --set-file "certificate.selfSigned.tlsKey=$GENERATED/tls.key")

# A kustomization of its own in $WORK/NAME: the overlay, with components (in this order) and more.
# Usage: kustomization NAME OVERLAY [COMPONENT...] <<< "extra lines"
kustomization() {
  local dir=$WORK/$1 overlay=$2 component
  shift 2
  mkdir -p "$dir"
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../manifests/overlays/%s]\n' "$overlay"
    (($# == 0)) || echo 'components:'
    for component; do
      printf '  - ../manifests/components/%s\n' "$component"
    done
    cat
  } >"$dir/kustomization.yaml"
}
kustomization self-signed-no-mc self-signed no-match-conditions </dev/null
kustomization cert-manager-no-mc cert-manager no-match-conditions </dev/null
kustomization cert-manager-no-stash cert-manager no-stash </dev/null
kustomization cert-manager-no-kubestash cert-manager no-kubestash </dev/null
kustomization self-signed-no-stash self-signed no-stash </dev/null
kustomization self-signed-no-kubestash-no-mc self-signed no-match-conditions no-kubestash </dev/null
kustomization cert-manager-no-stash-no-mc cert-manager no-match-conditions no-stash </dev/null
kustomization cert-manager-image cert-manager <<'EOF'
images:
  - name: stash-webhook
    newName: registry.example.com/stash/stash-webhook
    newTag: 0.1.0
replicas:
  - name: stash-webhook
    count: 3
EOF

# JSON array of the objects of a YAML stream, each normalized as said above.
# Usage: objects SIDE < yaml, SIDE being kustomize or helm
objects() {
  yq -cS . | jq -S -s --arg side "$1" '
    map(select(. != null))
    | if $side == "kustomize" then map(select(.kind != "Namespace")) else . end
    | if $side == "helm" then
        map(if .metadata.labels then
          .metadata.labels |= del(.["app.kubernetes.io/instance"], .["app.kubernetes.io/managed-by"], .["helm.sh/chart"])
        else . end)
      else . end
    | map(if .kind == "Secret" and .data then .data |= map_values(gsub("\\s"; "")) else . end)
    | sort_by(.apiVersion, .kind, (.metadata.namespace // ""), .metadata.name)'
}

DIFFERENT=0
# Usage: compare DESCRIPTION KUSTOMIZE_DIR HELM_ARGS...
compare() {
  local what=$1 dir=$2 n
  shift 2
  n=$((++PAIRS))
  if ! "$KUBECTL" kustomize "$dir" >"$WORK/$n.kustomize.yaml" 2>"$WORK/$n.err"; then
    echo "different objects: $what: kubectl kustomize failed: $(cat "$WORK/$n.err")"
    DIFFERENT=1
    return
  fi
  if ! "$HELM" template stash-webhook "$REPO/charts/stash-webhook" --namespace stash-system "$@" \
    >"$WORK/$n.helm.yaml" 2>"$WORK/$n.err"; then
    echo "different objects: $what: helm template failed: $(cat "$WORK/$n.err")"
    DIFFERENT=1
    return
  fi
  if ! objects kustomize <"$WORK/$n.kustomize.yaml" >"$WORK/$n.kustomize.json" ||
    ! objects helm <"$WORK/$n.helm.yaml" >"$WORK/$n.helm.json"; then
    echo "different objects: $what: cannot read the renderings"
    DIFFERENT=1
    return
  fi
  if diff -u --label "kubectl kustomize" --label "helm template" \
    "$WORK/$n.kustomize.json" "$WORK/$n.helm.json" >"$WORK/$n.diff"; then
    echo "same objects: $what"
  else
    echo "different objects: $what"
    sed 's/^/  /' "$WORK/$n.diff"
    DIFFERENT=1
  fi
}
PAIRS=0

compare "overlays/cert-manager and the chart's defaults" \
  "$WORK/manifests/overlays/cert-manager"
compare "overlays/self-signed and the chart with certificate.source=self-signed" \
  "$WORK/manifests/overlays/self-signed" "${SELF_SIGNED[@]}"
compare "overlays/cert-manager with components/no-match-conditions and the chart with matchConditions=false" \
  "$WORK/cert-manager-no-mc" --set matchConditions=false
compare "overlays/self-signed with components/no-match-conditions and the chart with certificate.source=self-signed, matchConditions=false" \
  "$WORK/self-signed-no-mc" "${SELF_SIGNED[@]}" --set matchConditions=false
compare "overlays/cert-manager with components/no-stash and the chart with stash.enabled=false" \
  "$WORK/cert-manager-no-stash" --set stash.enabled=false
compare "overlays/cert-manager with components/no-kubestash and the chart with kubestash.enabled=false" \
  "$WORK/cert-manager-no-kubestash" --set kubestash.enabled=false
compare "overlays/self-signed with components/no-stash and the chart with certificate.source=self-signed, stash.enabled=false" \
  "$WORK/self-signed-no-stash" "${SELF_SIGNED[@]}" --set stash.enabled=false
compare "overlays/self-signed with components/no-match-conditions, no-kubestash and the chart with certificate.source=self-signed, matchConditions=false, kubestash.enabled=false" \
  "$WORK/self-signed-no-kubestash-no-mc" "${SELF_SIGNED[@]}" --set matchConditions=false \
  --set kubestash.enabled=false
compare "overlays/cert-manager with components/no-match-conditions, no-stash and the chart with matchConditions=false, stash.enabled=false" \
  "$WORK/cert-manager-no-stash-no-mc" --set matchConditions=false --set stash.enabled=false
compare "overlays/cert-manager with kustomize images and replicas and the chart with image.repository, image.tag, replicas" \
  "$WORK/cert-manager-image" --set image.repository=registry.example.com/stash/stash-webhook \
  --set image.tag=0.1.0 --set replicas=3

exit "$DIFFERENT"
