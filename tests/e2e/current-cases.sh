# The end-to-end cases of the current server only, sourced by run.sh after the cases of both
# servers (its webhook is stopped by then): a matchCondition the API server cannot compile; then, on
# a fresh cluster, the install paths: the overlays applied whole, the policy/v1
# PodDisruptionBudget, and the Helm chart (lint, rendering against kustomize, server dry-run of
# each values combination, install with a denial seen through kubectl, uninstall).
# shellcheck shell=bash disable=SC2154 # the variables and functions of run.sh

begin match-condition-that-does-not-compile
# The API server compiles each matchCondition's CEL expression when the configuration is written.
check 1 "The ValidatingWebhookConfiguration \"stash-webhook-cel-typo\" is invalid: webhooks[0].matchConditions[0].expression: Invalid value: \"has(object.spec.hooks) && has(objekt.spec.hooks.preBackup.executor)\": compilation failed: ERROR: <input>:1:31: undeclared reference to 'objekt' (in container '')
 | has(object.spec.hooks) && has(objekt.spec.hooks.preBackup.executor)
 | ..............................^" \
  kubectl apply -f "$C/webhook-cel-typo.yaml"
check 1 'Error from server (NotFound): validatingwebhookconfigurations.admissionregistration.k8s.io "stash-webhook-cel-typo" not found' \
  kubectl get validatingwebhookconfigurations.admissionregistration.k8s.io stash-webhook-cel-typo
end

# --- a fresh cluster for the install paths --------------------------------------------------
# The overlays and the chart install the same cluster-wide objects as the setup above (the
# webhook configuration stash-webhook, its RBAC): they get a cluster of their own, with only the
# CRDs and the namespace demo.
e2e_stop_cluster
E2E_STATE=$RUN_DIR/install-cluster
e2e_start_cluster "$E2E_STATE" || setup_failed "the API server for the install cases did not start"
export KUBECONFIG=$E2E_ADMIN_KUBECONFIG
apply_crds
setup "create namespace demo" kubectl create namespace demo

# A copy of manifests/ with the self-signed overlay's generated/ made by the certs command.
INSTALL=$RUN_DIR/install
mkdir -p "$INSTALL"
cp -r manifests "$INSTALL/manifests"
GENERATED=$INSTALL/manifests/overlays/self-signed/generated
rm -rf "$GENERATED"
setup "stash-webhook certs" \
  "$WEBHOOK_BIN" certs --service stash-webhook --namespace stash-system --out "$GENERATED"
SELF_SIGNED=$INSTALL/manifests/overlays/self-signed
CERT_MANAGER=$INSTALL/manifests/overlays/cert-manager
setup "render the self-signed overlay" kubectl kustomize "$SELF_SIGNED" -o "$INSTALL/self-signed.yaml"
# jq and yq read the renderings.
setup "install jq and yq" e2e_install_packages jq yq
select_objects() { # select_objects JQ_CONDITION FROM TO: the objects of FROM for which it holds
  yq -y "select($1)" "$2" >"$3"
}
# What the cases delete again: everything but the Namespace, which never finishes terminating
# here (no kube-controller-manager), and is left.
setup "the self-signed overlay without its Namespace" \
  select_objects '.kind != "Namespace"' "$INSTALL/self-signed.yaml" "$INSTALL/self-signed-objects.yaml"
setup "the overlay's PodDisruptionBudget" \
  select_objects '.kind == "PodDisruptionBudget"' "$INSTALL/self-signed.yaml" "$INSTALL/pdb.yaml"

begin self-signed-overlay-applied-whole
check 0 "namespace/stash-system created
serviceaccount/stash-webhook created
role.rbac.authorization.k8s.io/stash-webhook-audit created
clusterrole.rbac.authorization.k8s.io/stash-webhook created
clusterrole.rbac.authorization.k8s.io/stash-webhook-kubestash created
rolebinding.rbac.authorization.k8s.io/stash-webhook-audit created
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook created
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook-kubestash created
secret/stash-webhook-tls created
service/stash-webhook created
deployment.apps/stash-webhook created
poddisruptionbudget.policy/stash-webhook created
validatingwebhookconfiguration.admissionregistration.k8s.io/stash-webhook created" kubectl apply -k "$SELF_SIGNED"
CA_BUNDLE=$(<"$GENERATED/ca-bundle.b64")
check 0 "$CA_BUNDLE $CA_BUNDLE $CA_BUNDLE $CA_BUNDLE" kubectl get validatingwebhookconfigurations.admissionregistration.k8s.io stash-webhook \
  -o 'jsonpath={.webhooks[*].clientConfig.caBundle}'
check 0 "names-an-executor-or-task names-an-addon-or-hook" kubectl get validatingwebhookconfigurations.admissionregistration.k8s.io stash-webhook \
  -o 'jsonpath={.webhooks[*].matchConditions[*].name}'
secret_is_generated() { # secret_is_generated FILE: the Secret's FILE is generated/FILE
  kubectl get secret -n stash-system stash-webhook-tls -o "jsonpath={.data.${1//./\\.}}" | base64 -d | cmp - "$GENERATED/$1"
}
check 0 "" secret_is_generated tls.crt
check 0 "" secret_is_generated tls.key
check 0 "serviceaccount \"stash-webhook\" deleted from stash-system namespace
role.rbac.authorization.k8s.io \"stash-webhook-audit\" deleted from stash-system namespace
clusterrole.rbac.authorization.k8s.io \"stash-webhook\" deleted
clusterrole.rbac.authorization.k8s.io \"stash-webhook-kubestash\" deleted
rolebinding.rbac.authorization.k8s.io \"stash-webhook-audit\" deleted from stash-system namespace
clusterrolebinding.rbac.authorization.k8s.io \"stash-webhook\" deleted
clusterrolebinding.rbac.authorization.k8s.io \"stash-webhook-kubestash\" deleted
secret \"stash-webhook-tls\" deleted from stash-system namespace
service \"stash-webhook\" deleted from stash-system namespace
deployment.apps \"stash-webhook\" deleted from stash-system namespace
poddisruptionbudget.policy \"stash-webhook\" deleted from stash-system namespace
validatingwebhookconfiguration.admissionregistration.k8s.io \"stash-webhook\" deleted" kubectl delete -f "$INSTALL/self-signed-objects.yaml"
end

begin pod-disruption-budget-policy-v1
check 0 "poddisruptionbudget.policy/stash-webhook created" kubectl apply -f "$INSTALL/pdb.yaml"
check 0 'policy/v1 1 {"app.kubernetes.io/name":"stash-webhook"}' \
  kubectl get poddisruptionbudgets.policy -n stash-system stash-webhook \
  -o 'jsonpath={.apiVersion} {.spec.minAvailable} {.spec.selector.matchLabels}'
check 0 'poddisruptionbudget.policy "stash-webhook" deleted from stash-system namespace' \
  kubectl delete -f "$INSTALL/pdb.yaml"
end

begin cert-manager-overlay-server-dry-run
# cert-manager's CRDs are not installed here: the server refuses its four objects (two Issuers,
# two Certificates) as unknown kinds, and accepts every other object of the overlay; nothing is
# stored.
unknown_kinds() { # unknown_kinds SOURCE KIND/NAME...: what kubectl says of these objects of SOURCE
  local source=$1 object
  shift
  for object in "$@"; do
    printf '\nresource mapping not found for name: "%s" namespace: "stash-system" from "%s": no matches for kind "%s" in version "cert-manager.io/v1"\nensure CRDs are installed first' \
      "${object#*/}" "$source" "${object%/*}"
  done
}
check 1 "namespace/stash-system unchanged (server dry run)
serviceaccount/stash-webhook created (server dry run)
role.rbac.authorization.k8s.io/stash-webhook-audit created (server dry run)
clusterrole.rbac.authorization.k8s.io/stash-webhook created (server dry run)
clusterrole.rbac.authorization.k8s.io/stash-webhook-kubestash created (server dry run)
rolebinding.rbac.authorization.k8s.io/stash-webhook-audit created (server dry run)
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook created (server dry run)
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook-kubestash created (server dry run)
service/stash-webhook created (server dry run)
deployment.apps/stash-webhook created (server dry run)
poddisruptionbudget.policy/stash-webhook created (server dry run)
validatingwebhookconfiguration.admissionregistration.k8s.io/stash-webhook created (server dry run)$(unknown_kinds "$CERT_MANAGER" \
  Certificate/stash-webhook Certificate/stash-webhook-ca Issuer/stash-webhook-ca Issuer/stash-webhook-selfsigned)" \
  kubectl apply --dry-run=server -k "$CERT_MANAGER"
check 1 'Error from server (NotFound): validatingwebhookconfigurations.admissionregistration.k8s.io "stash-webhook" not found' \
  kubectl get validatingwebhookconfigurations.admissionregistration.k8s.io stash-webhook
end

# --- the Helm chart -------------------------------------------------------------------------
CHART=charts/stash-webhook
CHART_SELF_SIGNED=(--set certificate.source=self-signed
  --set-file "certificate.selfSigned.caCrt=$GENERATED/ca.crt"
  --set-file "certificate.selfSigned.tlsCrt=$GENERATED/tls.crt"
  --set-file "certificate.selfSigned.tlsKey=$GENERATED/tls.key")
LINTED="==> Linting $CHART
[INFO] Chart.yaml: icon is recommended

1 chart(s) linted, 0 chart(s) failed"

begin chart-lint
check 0 "$LINTED" helm lint --strict "$CHART"
check 0 "$LINTED" helm lint --strict "$CHART" "${CHART_SELF_SIGNED[@]}"
end

begin chart-renders-what-kustomize-renders
# tests/chart/compare.sh: the chart against the overlays, object by object, for each way of
# installing (it lists the intended differences).
check 0 "same objects: overlays/cert-manager and the chart's defaults
same objects: overlays/self-signed and the chart with certificate.source=self-signed
same objects: overlays/cert-manager with components/no-match-conditions and the chart with matchConditions=false
same objects: overlays/self-signed with components/no-match-conditions and the chart with certificate.source=self-signed, matchConditions=false
same objects: overlays/cert-manager with components/no-stash and the chart with stash.enabled=false
same objects: overlays/cert-manager with components/no-kubestash and the chart with kubestash.enabled=false
same objects: overlays/self-signed with components/no-stash and the chart with certificate.source=self-signed, stash.enabled=false
same objects: overlays/self-signed with components/no-match-conditions, no-kubestash and the chart with certificate.source=self-signed, matchConditions=false, kubestash.enabled=false
same objects: overlays/cert-manager with components/no-match-conditions, no-stash and the chart with matchConditions=false, stash.enabled=false
same objects: overlays/cert-manager with kustomize images and replicas and the chart with image.repository, image.tag, replicas" \
  env STASH_WEBHOOK_BIN="$WEBHOOK_BIN" HELM="$(command -v helm)" bash tests/chart/compare.sh
end

# Every values combination the chart offers, rendered and applied with --dry-run=server.
CHART_ALL_OFF=(--set matchConditions=false --set protection.enabled=false)
CHART_EVERY_VALUE=("${CHART_SELF_SIGNED[@]}" "${CHART_ALL_OFF[@]}"
  --set failurePolicy=Ignore --set timeoutSeconds=10 --set replicas=3
  --set image.repository=registry.example.com/stash/stash-webhook --set-string image.tag=0.1.0
  --set image.pullPolicy=IfNotPresent --set audit.interval=30m
  --set 'extraArgs={--on-lookup-failure=allow,--lookup-timeout=1s}'
  --set resources.requests.cpu=100m --set resources.limits.memory=256Mi
  --set url=https://127.0.0.1:8443)
chart_dry_run() { # chart_dry_run HELM_ARGS...: the chart rendered with them, server dry run
  helm template stash-webhook "$CHART" --namespace stash-system "$@" >"$INSTALL/chart.yaml" &&
    kubectl apply --dry-run=server -f "$INSTALL/chart.yaml"
}
CHART_OBJECTS="poddisruptionbudget.policy/stash-webhook created (server dry run)
serviceaccount/stash-webhook created (server dry run)
clusterrole.rbac.authorization.k8s.io/stash-webhook created (server dry run)
clusterrole.rbac.authorization.k8s.io/stash-webhook-kubestash created (server dry run)
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook created (server dry run)
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook-kubestash created (server dry run)
role.rbac.authorization.k8s.io/stash-webhook-audit created (server dry run)
rolebinding.rbac.authorization.k8s.io/stash-webhook-audit created (server dry run)
service/stash-webhook created (server dry run)
deployment.apps/stash-webhook created (server dry run)
validatingwebhookconfiguration.admissionregistration.k8s.io/stash-webhook created (server dry run)"
# With self-signed, the Secret too, after the ServiceAccount (Helm's install order).
CHART_OBJECTS_SELF_SIGNED=$(sed '2a secret/stash-webhook-tls created (server dry run)' <<<"$CHART_OBJECTS")
# Without KubeStash, without its ClusterRole and binding.
CHART_OBJECTS_NO_KUBESTASH=$(grep -v stash-webhook-kubestash <<<"$CHART_OBJECTS_SELF_SIGNED")

begin chart-templates-pass-server-dry-run
# cert-manager's CRDs are not installed here (see cert-manager-overlay-server-dry-run); kubectl
# names what it refuses in the order of Helm's rendering.
CHART_UNKNOWN=$(unknown_kinds "$INSTALL/chart.yaml" Certificate/stash-webhook-ca \
  Certificate/stash-webhook Issuer/stash-webhook-selfsigned Issuer/stash-webhook-ca)
check 1 "$CHART_OBJECTS$CHART_UNKNOWN" chart_dry_run
check 1 "$CHART_OBJECTS$CHART_UNKNOWN" chart_dry_run "${CHART_ALL_OFF[@]}"
check 0 "$CHART_OBJECTS_SELF_SIGNED" chart_dry_run "${CHART_SELF_SIGNED[@]}"
check 0 "$CHART_OBJECTS_SELF_SIGNED" chart_dry_run "${CHART_EVERY_VALUE[@]}"
# Each family switched off, with everything else off too.
check 0 "$CHART_OBJECTS_SELF_SIGNED" chart_dry_run "${CHART_EVERY_VALUE[@]}" --set stash.enabled=false
check 0 "$CHART_OBJECTS_NO_KUBESTASH" chart_dry_run "${CHART_EVERY_VALUE[@]}" --set kubestash.enabled=false
check 1 'Error from server (NotFound): validatingwebhookconfigurations.admissionregistration.k8s.io "stash-webhook" not found' \
  kubectl get validatingwebhookconfigurations.admissionregistration.k8s.io stash-webhook
end

begin chart-values-reach-the-objects
chart_json() { # chart_json KIND JQ HELM_ARGS...: JQ of the chart's KIND rendered with HELM_ARGS
  local kind=$1 filter=$2
  shift 2
  helm template stash-webhook "$CHART" --namespace stash-system "$@" |
    yq -cS "select(.kind == \"$kind\") | $filter"
}
WEBHOOKS='[.webhooks[] | {name, failurePolicy, timeoutSeconds, clientConfig: (.clientConfig | del(.caBundle)), matchConditions: [.matchConditions[]?.name]}]'
check 0 '[{"clientConfig":{"service":{"name":"stash-webhook","namespace":"stash-system","path":"/validate","port":443}},"failurePolicy":"Fail","matchConditions":["names-an-executor-or-task"],"name":"validate.stash-webhook.stash.appscode.com","timeoutSeconds":5},{"clientConfig":{"service":{"name":"stash-webhook","namespace":"stash-system","path":"/protect","port":443}},"failurePolicy":"Fail","matchConditions":[],"name":"protect.stash-webhook.stash.appscode.com","timeoutSeconds":10},{"clientConfig":{"service":{"name":"stash-webhook","namespace":"stash-system","path":"/validate","port":443}},"failurePolicy":"Fail","matchConditions":["names-an-addon-or-hook"],"name":"validate-kubestash.stash-webhook.stash.appscode.com","timeoutSeconds":5},{"clientConfig":{"service":{"name":"stash-webhook","namespace":"stash-system","path":"/protect","port":443}},"failurePolicy":"Fail","matchConditions":[],"name":"protect-kubestash.stash-webhook.stash.appscode.com","timeoutSeconds":10}]' \
  chart_json ValidatingWebhookConfiguration "$WEBHOOKS"
check 0 '[{"clientConfig":{"url":"https://127.0.0.1:8443/validate"},"failurePolicy":"Ignore","matchConditions":[],"name":"validate.stash-webhook.stash.appscode.com","timeoutSeconds":10},{"clientConfig":{"url":"https://127.0.0.1:8443/validate"},"failurePolicy":"Ignore","matchConditions":[],"name":"validate-kubestash.stash-webhook.stash.appscode.com","timeoutSeconds":10}]' \
  chart_json ValidatingWebhookConfiguration "$WEBHOOKS" "${CHART_EVERY_VALUE[@]}"
# Each family on its own: its two webhooks, in order.
check 0 '["validate-kubestash.stash-webhook.stash.appscode.com","protect-kubestash.stash-webhook.stash.appscode.com"]' \
  chart_json ValidatingWebhookConfiguration '[.webhooks[].name]' --set stash.enabled=false
check 0 '["validate.stash-webhook.stash.appscode.com","protect.stash-webhook.stash.appscode.com"]' \
  chart_json ValidatingWebhookConfiguration '[.webhooks[].name]' --set kubestash.enabled=false
# shellcheck disable=SC2016 # $r is jq's
check 0 '{"args":["serve","--listen=0.0.0.0:8443","--tls-cert=/etc/stash-webhook/tls/tls.crt","--tls-key=/etc/stash-webhook/tls/tls.key","--metrics-listen=0.0.0.0:9090","--log-format=json","--audit-interval=30m","--on-lookup-failure=allow","--lookup-timeout=1s"],"image":"registry.example.com/stash/stash-webhook:0.1.0","imagePullPolicy":"IfNotPresent","replicas":3,"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"64Mi"}}}' \
  chart_json Deployment '.spec.replicas as $r | .spec.template.spec.containers[0] | {args, image, imagePullPolicy, resources, replicas: $r}' "${CHART_EVERY_VALUE[@]}"
# Values that cannot work are refused when rendering, saying what to set.
check 1 'Error: execution error at (stash-webhook/templates/webhook.yaml:7:13): certificate.source must be cert-manager or self-signed, not "vault"

Use --debug flag to render out invalid YAML' \
  helm template stash-webhook "$CHART" --set certificate.source=vault
check 1 'Error: execution error at (stash-webhook/templates/webhook.yaml:18:10): certificate.selfSigned.caCrt: --set-file certificate.selfSigned.caCrt=DIR/ca.crt (see values.yaml)

Use --debug flag to render out invalid YAML' \
  helm template stash-webhook "$CHART" --set certificate.source=self-signed
check 1 'Error: execution error at (stash-webhook/templates/webhook.yaml:12:4): stash.enabled and kubestash.enabled are both false: the webhook would judge nothing

Use --debug flag to render out invalid YAML' \
  helm template stash-webhook "$CHART" --set stash.enabled=false --set kubestash.enabled=false
end

begin chart-install-denies-through-kubectl
# The chart installed with its development value `url`: the API server calls this machine's
# webhook process (the Deployment is created with no replicas: no kubelet runs here). The
# process reads Functions with the RBAC the chart installed.
helm_install() {
  # The date changes with every run; the rest of what helm prints is asserted.
  helm install stash-webhook "$CHART" --namespace stash-system --create-namespace \
    --set certificate.source=self-signed \
    --set-file "certificate.selfSigned.caCrt=$WEBHOOK_PKI/ca.crt" \
    --set-file "certificate.selfSigned.tlsCrt=$WEBHOOK_PKI/serving.crt" \
    --set-file "certificate.selfSigned.tlsKey=$WEBHOOK_PKI/serving.key" \
    --set url="$WEBHOOK_URL" --set replicas=0 2>&1 |
    sed 's/^LAST DEPLOYED: .*/LAST DEPLOYED: (the date)/'
  return "${PIPESTATUS[0]}"
}
check 0 "NAME: stash-webhook
LAST DEPLOYED: (the date)
NAMESPACE: stash-system
STATUS: deployed
REVISION: 1
DESCRIPTION: Install complete
TEST SUITE: None
NOTES:
stash-webhook is installed in namespace stash-system.

The API server calls the webhook at $WEBHOOK_URL/validate and $WEBHOOK_URL/protect
(development use): run \`stash-webhook serve\` there with a serving certificate of the CA given as
certificate.selfSigned.caCrt, and a kubeconfig for the ServiceAccount
stash-system/stash-webhook.

The Stash CRDs must declare hooks.*.executor: apply manifests/crd-executor-patch (see its README)
once, and again after every Stash upgrade.

See it work: a hook naming a Function that does not exist is refused at kubectl apply, in any
namespace but stash-system and kube-system:
  kubectl apply -f manifests/examples/functions.yaml
  kubectl create namespace demo
  kubectl apply -f manifests/examples/backupconfiguration-missing-function.yaml
prints
  $(denied creating manifests/examples/backupconfiguration-missing-function.yaml)spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-exector\" not found: create the Function, or fix the name $LIST

KubeStash (core.kubestash.com): BackupConfigurations, RestoreSessions, BackupBatches and
BackupBlueprints are judged by validate-kubestash.stash-webhook.stash.appscode.com, and
Addons, Functions (addons.kubestash.com) and HookTemplates by
protect-kubestash.stash-webhook.stash.appscode.com.

Uninstall: helm uninstall stash-webhook -n stash-system
(the webhook configuration is deleted first, so no write waits on a webhook that is gone)." helm_install
start_webhook || CASE_PROBLEMS+=("the webhook did not become ready ($WEBHOOK_URL/readyz)")
eventually 60 "the API server calls the webhook" webhook_judges
# What the chart's NOTES say to run, and the denial they say it prints (of the same object in
# tests/e2e/cases, with only the hooks the stand-in CRDs know).
check 0 "function.stash.appscode.com/mysql-hook-executor created
function.stash.appscode.com/postgres-hook-executor created
Warning: spec.image: Function \"no-image-fn\" has no container image: a hook that names it fails until it has one (set spec.image to a container image)
function.stash.appscode.com/no-image-fn created
function.stash.appscode.com/mysql-backup created
function.stash.appscode.com/postgres-backup created
function.stash.appscode.com/postgres-restore created
function.stash.appscode.com/update-status created
task.stash.appscode.com/mysql-backup-8.0.14 created
task.stash.appscode.com/postgres-backup-16.1 created
task.stash.appscode.com/postgres-restore-16.1 created
function.addons.kubestash.com/mysql-logical-backup created
function.addons.kubestash.com/mysql-logical-restore created
function.addons.kubestash.com/mysql-read-only created
addon.addons.kubestash.com/mysql-addon created
hooktemplate.core.kubestash.com/mysql-read-only created" kubectl apply -f manifests/examples/functions.yaml
check 1 "$(denied creating "$C/backupconfiguration-missing-function.yaml")spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-exector\" not found: create the Function, or fix the name $LIST" \
  kubectl apply -f "$C/backupconfiguration-missing-function.yaml"
check 0 'release "stash-webhook" uninstalled' helm uninstall stash-webhook --namespace stash-system
check 1 'Error from server (NotFound): validatingwebhookconfigurations.admissionregistration.k8s.io "stash-webhook" not found' \
  kubectl get validatingwebhookconfigurations.admissionregistration.k8s.io stash-webhook
e2e_kill webhook
check 0 "function.stash.appscode.com \"mysql-hook-executor\" deleted
function.stash.appscode.com \"postgres-hook-executor\" deleted
function.stash.appscode.com \"no-image-fn\" deleted
function.stash.appscode.com \"mysql-backup\" deleted
function.stash.appscode.com \"postgres-backup\" deleted
function.stash.appscode.com \"postgres-restore\" deleted
function.stash.appscode.com \"update-status\" deleted
task.stash.appscode.com \"mysql-backup-8.0.14\" deleted
task.stash.appscode.com \"postgres-backup-16.1\" deleted
task.stash.appscode.com \"postgres-restore-16.1\" deleted
function.addons.kubestash.com \"mysql-logical-backup\" deleted
function.addons.kubestash.com \"mysql-logical-restore\" deleted
function.addons.kubestash.com \"mysql-read-only\" deleted
addon.addons.kubestash.com \"mysql-addon\" deleted
hooktemplate.core.kubestash.com \"mysql-read-only\" deleted$(from_namespace demo)" kubectl delete -f manifests/examples/functions.yaml
end
