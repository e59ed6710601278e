#!/usr/bin/env bash
# End-to-end tests: stash-webhook behind a real kube-apiserver, driven by the real kubectl,
# asserting exactly what kubectl prints. Each case runs on each server: kube-apiserver 1.20 and a
# current release (tests/e2e/apiserver.sh); the current one also runs the cases of
# current-cases.sh (matchConditions, the overlays applied whole, the Helm chart).
#
#   bash tests/e2e/run.sh
#
# Environment:
#   STASH_E2E_SERVERS  the servers to run on, in order: "1.20 current" (the default), "1.20" or
#                      "current"
#   STASH_WEBHOOK_BIN  the stash-webhook binary to test; when unset, it is built with
#                      `cargo build --release --locked --bin stash-webhook` in the repository
#   STASH_E2E_KEEP=1   keep the run's directory (logs, certificates, kubeconfigs) after it ends
#   STASH_E2E_VERBOSE=1  print every command the cases run, with its output
#   STASH_E2E_CACHE    see apiserver.sh (where the built binaries are kept)
#
# Prints `ok NAME (VERSION)` or `FAIL NAME (VERSION)` (with what was expected and what kubectl
# printed) per case and server, then `N passed, M failed` over all of them; exits 1 if any case
# failed. Everything it started is stopped and its temporary directory removed however it ends.
#
# The run for each server is this script again, with E2E_ONE_SERVER set (and E2E_RUN_DIR, its
# directory, where it leaves its counts): one server's setup failing does not stop the other's.

set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=apiserver.sh
source "$E2E_DIR/apiserver.sh"

# --- all servers ----------------------------------------------------------------------------
cleanup_all() {
  local rc=$? pidfile
  trap - EXIT INT TERM HUP
  # A server's run stops what it started; this is for a run that was killed.
  for pidfile in "$RUN_DIR"/*/*/*.pid; do
    [[ -f $pidfile ]] || continue
    E2E_STATE=$(dirname "$pidfile") e2e_kill "$(basename "$pidfile" .pid)"
  done
  if [[ ${STASH_E2E_KEEP:-} == 1 ]]; then
    e2e_log "kept $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
  e2e_log "finished in $((SECONDS - RUN_STARTED)) s"
  exit "$rc"
}

# Runs each server's cases (this script with E2E_ONE_SERVER set), then prints the total.
all_servers() {
  local servers=() server passed failed
  RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stash-webhook-e2e.XXXXXX") || exit 1
  RUN_STARTED=$SECONDS
  trap cleanup_all EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP

  read -ra servers <<<"${STASH_E2E_SERVERS:-1.20 current}"
  if ((${#servers[@]} == 0)); then
    echo "FAIL setup: STASH_E2E_SERVERS names no server"
    echo "0 passed, 1 failed"
    exit 1
  fi
  if ! e2e_webhook_bin "$REPO"; then
    echo "FAIL setup: no stash-webhook binary"
    echo "0 passed, 1 failed"
    exit 1
  fi
  PASSED=0
  FAILED=0
  for server in "${servers[@]}"; do
    mkdir -p "$RUN_DIR/$server"
    STASH_WEBHOOK_BIN=$WEBHOOK_BIN E2E_ONE_SERVER=$server E2E_RUN_DIR=$RUN_DIR/$server \
      bash "${BASH_SOURCE[0]}"
    if read -r passed failed <"$RUN_DIR/$server/counts" 2>/dev/null; then
      PASSED=$((PASSED + passed))
      FAILED=$((FAILED + failed))
    else
      echo "FAIL $server: its run ended without counting its cases"
      FAILED=$((FAILED + 1))
    fi
  done
  echo "$PASSED passed, $FAILED failed"
  ((FAILED == 0))
}
if [[ -z ${E2E_ONE_SERVER:-} ]]; then
  all_servers
  exit
fi

# --- one server -----------------------------------------------------------------------------
RUN_DIR=$E2E_RUN_DIR
E2E_STATE=$RUN_DIR/cluster
RUN_STARTED=$SECONDS
PASSED=0
FAILED=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  e2e_kill webhook
  e2e_kill second
  e2e_stop_cluster
  echo "$PASSED $FAILED" >"$RUN_DIR/counts"
  e2e_log "$E2E_ONE_SERVER: finished in $((SECONDS - RUN_STARTED)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# A setup step failed: say so in the runner's format, with the logs' ends, and stop this server.
setup_failed() {
  local name
  echo "FAIL setup ($E2E_SERVER_VERSION): $*"
  for name in webhook kube-apiserver; do
    if [[ -s $E2E_STATE/$name.log ]]; then
      echo "  the end of $name.log:"
      tail -n 20 "$E2E_STATE/$name.log" | sed 's/^/    /'
    fi
  done
  FAILED=$((FAILED + 1))
  exit 1
}

# Runs CMD... quietly; on failure, shows its output and fails the setup.
setup() {
  local what=$1 out
  shift
  out=$("$@" 2>&1) || setup_failed "$what: $out"
}

if ! e2e_use_server "$E2E_ONE_SERVER"; then
  E2E_SERVER_VERSION=$E2E_ONE_SERVER
  setup_failed "unknown server $E2E_ONE_SERVER (1.20 or current)"
fi
# The current server is driven with the kubectl of its release (and helm built beside it).
[[ -z $E2E_BIN_PATH ]] || export PATH=$E2E_BIN_PATH:$PATH
cd "$REPO" || exit 1
WEBHOOK_BIN=$STASH_WEBHOOK_BIN
[[ -x $WEBHOOK_BIN ]] || setup_failed "$WEBHOOK_BIN is not an executable"

# --- the API server -------------------------------------------------------------------------
command -v kubectl >/dev/null || setup_failed "kubectl is not installed"
# kubectl 1.34 and newer say where a namespaced object was deleted from (`... deleted from demo
# namespace`); older ones, such as the 1.32 these cases were first written with, say `... deleted`.
KUBECTL_MINOR=$(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: v1\.\([0-9]*\)\..*/\1/p')
[[ -n $KUBECTL_MINOR ]] || setup_failed "cannot read the version of $(command -v kubectl)"
from_namespace() { # from_namespace NS: what this kubectl adds after "deleted" for an object in NS
  if ((KUBECTL_MINOR >= 34)); then printf ' from %s namespace' "$1"; fi
}
e2e_build_server || setup_failed "could not build kube-apiserver $E2E_SERVER_VERSION"
e2e_log "$E2E_ONE_SERVER: kube-apiserver $E2E_SERVER_VERSION, $(command -v kubectl) ($(kubectl version --client 2>/dev/null | head -n 1))"
e2e_start_cluster "$E2E_STATE" || setup_failed "the API server did not start"
export KUBECONFIG=$E2E_ADMIN_KUBECONFIG
export KUBECACHEDIR=$RUN_DIR/kube-cache
WEBHOOK_USER=system:serviceaccount:stash-system:stash-webhook

# The CRDs: Function, Task, and the five kinds that name them, with the executor component applied.
apply_crds() {
  setup "apply the Function CRD" kubectl apply -f "$E2E_DIR/functions-crd.yaml"
  setup "apply the Task CRD" kubectl apply -f "$E2E_DIR/tasks-crd.yaml"
  setup "render tests/fixtures/crds" kubectl kustomize tests/fixtures/crds -o "$RUN_DIR/crds.yaml"
  setup "apply the hook kinds' CRDs" kubectl apply -f "$RUN_DIR/crds.yaml"
  setup "apply the KubeStash CRDs" kubectl apply -f "$E2E_DIR/kubestash-crds.yaml"
  setup "wait for the CRDs" kubectl wait --for condition=Established --timeout 60s \
    crd/functions.stash.appscode.com crd/tasks.stash.appscode.com \
    crd/backupconfigurations.stash.appscode.com \
    crd/restoresessions.stash.appscode.com crd/backupbatches.stash.appscode.com \
    crd/restorebatches.stash.appscode.com crd/backupblueprints.stash.appscode.com \
    crd/addons.addons.kubestash.com crd/functions.addons.kubestash.com \
    crd/hooktemplates.core.kubestash.com crd/backupconfigurations.core.kubestash.com \
    crd/restoresessions.core.kubestash.com crd/backupbatches.core.kubestash.com \
    crd/backupblueprints.core.kubestash.com
}
apply_crds

# The webhook's RBAC, as shipped, and the namespace of the cases.
setup "apply the RBAC" kubectl apply -f manifests/base/namespace.yaml -f manifests/base/rbac.yaml
setup "create namespace demo" kubectl create namespace demo

can_i() { # can_i VERB yes|no [PLURAL]: whether the webhook's identity may VERB Functions (or PLURAL) is as said
  [[ $(kubectl auth can-i "$1" "${3:-functions}.stash.appscode.com" --as "$WEBHOOK_USER" 2>/dev/null) == "$2" ]]
}
e2e_wait_for 60 can_i watch yes || setup_failed "the webhook's identity cannot watch Functions"
# The webhook is ready once it has listed Tasks too.
e2e_wait_for 60 can_i watch yes tasks || setup_failed "the webhook's identity cannot watch Tasks"

# --- the webhook ----------------------------------------------------------------------------
WEBHOOK_PKI=$RUN_DIR/webhook-pki
mkdir -p "$WEBHOOK_PKI"
if ! {
  e2e_ca "$WEBHOOK_PKI" ca &&
    e2e_cert "$WEBHOOK_PKI" ca serving /CN=127.0.0.1 \
      "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
}; then
  setup_failed "could not make the webhook's certificate"
fi
e2e_free_port WEBHOOK_PORT || setup_failed "no free port for the webhook"
WEBHOOK_URL=https://127.0.0.1:$WEBHOOK_PORT

# Starts `stash-webhook serve` on WEBHOOK_URL, as replica-a, and waits until it is ready.
start_webhook() {
  e2e_log "starting $WEBHOOK_BIN on $WEBHOOK_URL"
  e2e_spawn webhook env KUBECONFIG="$E2E_WEBHOOK_KUBECONFIG" "$WEBHOOK_BIN" serve \
    --listen "127.0.0.1:$WEBHOOK_PORT" \
    --tls-cert "$WEBHOOK_PKI/serving.crt" --tls-key "$WEBHOOK_PKI/serving.key" \
    --pod-name replica-a --lease-duration 5s
  e2e_wait_ready 60 webhook_ready
}
webhook_ready() {
  e2e_alive webhook || return 2
  [[ $(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$WEBHOOK_PKI/ca.crt" \
    "$WEBHOOK_URL/readyz" 2>/dev/null) == 200 ]]
}
start_webhook || setup_failed "the webhook did not become ready ($WEBHOOK_URL/readyz)"

# The shipped webhook configuration, pointed at the URL, with the test CA. On 1.20 with the
# component manifests/components/no-match-conditions, as an admin of such a cluster installs it:
# kube-apiserver 1.20 does not know matchConditions.
mkdir -p "$RUN_DIR/webhook-config"
cp manifests/base/webhook.yaml "$RUN_DIR/webhook-config/"
COMPONENTS=
if [[ $E2E_SERVER == 1.20 ]]; then
  cp -r manifests/components/no-match-conditions "$RUN_DIR/webhook-config/"
  COMPONENTS="components: [no-match-conditions]"
fi
cat >"$RUN_DIR/webhook-config/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [webhook.yaml]
$COMPONENTS
patches:
  - patch: |-
      apiVersion: admissionregistration.k8s.io/v1
      kind: ValidatingWebhookConfiguration
      metadata:
        name: stash-webhook
      webhooks:
        - name: validate.stash-webhook.stash.appscode.com
          clientConfig:
            service: null
            url: $WEBHOOK_URL/validate
            caBundle: $(base64 -w0 "$WEBHOOK_PKI/ca.crt")
        - name: protect.stash-webhook.stash.appscode.com
          clientConfig:
            service: null
            url: $WEBHOOK_URL/protect
            caBundle: $(base64 -w0 "$WEBHOOK_PKI/ca.crt")
        - name: validate-kubestash.stash-webhook.stash.appscode.com
          clientConfig:
            service: null
            url: $WEBHOOK_URL/validate
            caBundle: $(base64 -w0 "$WEBHOOK_PKI/ca.crt")
        - name: protect-kubestash.stash-webhook.stash.appscode.com
          clientConfig:
            service: null
            url: $WEBHOOK_URL/protect
            caBundle: $(base64 -w0 "$WEBHOOK_PKI/ca.crt")
EOF
setup "render the webhook configuration" \
  kubectl kustomize "$RUN_DIR/webhook-config" -o "$RUN_DIR/webhook-configuration.yaml"
has_match_conditions() {
  [[ -n $(kubectl get validatingwebhookconfiguration stash-webhook \
    -o 'jsonpath={.webhooks[0].matchConditions[*].name}' 2>/dev/null) ]]
}
setup "apply the webhook configuration" kubectl apply -f "$RUN_DIR/webhook-configuration.yaml"
if [[ $E2E_SERVER == 1.20 ]]; then
  has_match_conditions && setup_failed "the webhook configuration on 1.20 has matchConditions"
else
  has_match_conditions || setup_failed "the webhook configuration has no matchConditions"
fi

# The Functions and Tasks the cases name, created while the webhook watches.
setup "create the Functions" kubectl apply -f tests/e2e/cases/functions.yaml
setup "create the Tasks" kubectl apply -f tests/e2e/cases/tasks.yaml

# The API server calls the webhook once its informer has the configuration.
webhook_judges() {
  [[ $(kubectl apply --dry-run=server -f tests/e2e/cases/backupconfiguration-missing-function.yaml 2>&1) == *"denied the request"* ]]
}
e2e_wait_for 60 webhook_judges || setup_failed "the API server does not call the webhook"
e2e_log "$E2E_ONE_SERVER: setup done in $((SECONDS - RUN_STARTED)) s"

# --- the cases ------------------------------------------------------------------------------
CASE=
CASE_PROBLEMS=()

begin() {
  CASE=$1
  CASE_PROBLEMS=()
}

indent() { sed 's/^/    /'; }

# Usage: check RC EXPECTED CMD...: CMD's stdout and stderr together must be EXPECTED exactly, and
# its exit status RC.
check() {
  local want_rc=$1 want=$2 got rc
  shift 2
  got=$("$@" 2>&1)
  rc=$?
  if [[ ${STASH_E2E_VERBOSE:-} == 1 ]]; then
    printf '  $ %s   (exit %s)\n%s\n' "$*" "$rc" "$(indent <<<"$got")"
  fi
  if [[ $rc != "$want_rc" || $got != "$want" ]]; then
    CASE_PROBLEMS+=("$(printf '$ %s\n  expected (exit %s):\n%s\n  got (exit %s):\n%s' \
      "$*" "$want_rc" "$(indent <<<"$want")" "$rc" "$(indent <<<"$got")")")
  fi
}

# Usage: eventually SECONDS DESCRIPTION CMD...: polls CMD until it succeeds.
eventually() {
  local seconds=$1 what=$2
  shift 2
  e2e_wait_for "$seconds" "$@" || CASE_PROBLEMS+=("not within ${seconds} s: $what")
}

# Usage: events_on NAME REASON: "TYPE REASON NOTE" of each Event on demo/NAME with that reason.
events_on() {
  kubectl get events -n demo --field-selector "reason=$2,involvedObject.name=$1" \
    -o jsonpath='{range .items[*]}{.type} {.reason} {.message}{"\n"}{end}'
}
has_events_on() { [[ -n $(events_on "$1" "$2") ]]; }

end() {
  if ((${#CASE_PROBLEMS[@]} == 0)); then
    echo "ok $CASE ($E2E_SERVER_VERSION)"
    PASSED=$((PASSED + 1))
  else
    echo "FAIL $CASE ($E2E_SERVER_VERSION)"
    printf '%s\n' "${CASE_PROBLEMS[@]}" | sed 's/^/  /'
    FAILED=$((FAILED + 1))
  fi
}

NAME=validate.stash-webhook.stash.appscode.com
LIST='(list them with: kubectl get functions.stash.appscode.com)'
C=tests/e2e/cases
# What kubectl prints before the webhook's message when it denies a create (or a replace).
denied() { # denied VERB FILE
  printf 'Error from server (Forbidden): error when %s "%s": admission webhook "%s" denied the request: ' "$1" "$2" "$NAME"
}
not_found() { # not_found PLURAL NAME: kubectl get of an object that is not stored
  printf 'Error from server (NotFound): %s.stash.appscode.com "%s" not found' "$1" "$2"
}

begin missing-function
check 1 "$(denied creating $C/backupconfiguration-missing-function.yaml)spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-exector\" not found: create the Function, or fix the name $LIST" \
  kubectl apply -f $C/backupconfiguration-missing-function.yaml
check 1 "$(not_found backupconfigurations mysql-backup-typo)" \
  kubectl get -n demo backupconfigurations.stash.appscode.com mysql-backup-typo
end

begin function-without-image
check 0 "" kubectl get functions.stash.appscode.com no-image-fn -o 'jsonpath={.spec.image}'
check 1 "$(denied creating $C/backupconfiguration-no-image.yaml)spec.hooks.postBackup.executor.functionName: Function \"no-image-fn\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image-fn), or name another Function" \
  kubectl apply -f $C/backupconfiguration-no-image.yaml
end

begin several-problems-one-denial
# shellcheck disable=SC2016 # ${NAME} is the webhook's text
check 1 "$(denied creating $C/backupbatch-several.yaml)spec.hooks.postBackup.executor.functionName: Function \"bad-image-fn\" has an invalid container image \"Mysql Hook\": it contains whitespace: fix spec.image on the Function (kubectl edit functions.stash.appscode.com bad-image-fn)
spec.members[0].hooks.postBackup.executor.functionName: Function \"no-image-fn\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image-fn), or name another Function
spec.members[1].hooks.preBackup.executor.functionName: Function \"ghost-fn\" not found: create the Function, or fix the name $LIST
spec.members[1].hooks.preBackup.executor.params[db-host]: parameter name \"db-host\" is invalid: use letters, digits and '_', not starting with a digit, since the Function reads it as \${NAME}
spec.members[2].hooks.postBackup.executor.functionName: is required: name the Function that runs this hook $LIST" \
  kubectl apply -f $C/backupbatch-several.yaml
check 1 "$(not_found backupbatches app-and-db)" kubectl get -n demo backupbatches.stash.appscode.com app-and-db
end

begin valid-executor
check 0 "restoresession.stash.appscode.com/postgres-restore created" \
  kubectl apply -f $C/restoresession-valid.yaml
check 0 "restoresession.stash.appscode.com \"postgres-restore\" deleted$(from_namespace demo)" \
  kubectl delete -f $C/restoresession-valid.yaml
end

begin update-ratchets-unchanged-reference
check 0 "function.stash.appscode.com/short-lived-fn created" kubectl apply -f $C/ratchet/function.yaml
check 0 "backupconfiguration.stash.appscode.com/ratchet created" \
  kubectl apply -f $C/ratchet/backupconfiguration.yaml
# A Function a hook names is protected: deleting it is denied, naming the hook.
ANNOTATION=stash-webhook.stash.appscode.com/allow-breaking-references
check 1 "Error from server (Forbidden): admission webhook \"protect.stash-webhook.stash.appscode.com\" denied the request: Function \"short-lived-fn\" is used by 1 hook: demo/BackupConfiguration/ratchet (spec.hooks.preBackup): change or delete them first, or annotate the Function with $ANNOTATION=true" \
  kubectl delete functions.stash.appscode.com short-lived-fn
# With the annotation, it goes, with a warning naming what breaks.
check 0 "function.stash.appscode.com/short-lived-fn annotated" \
  kubectl annotate functions.stash.appscode.com short-lived-fn "$ANNOTATION=true"
check 0 "Warning: Function \"short-lived-fn\" is used by 1 hook: demo/BackupConfiguration/ratchet (spec.hooks.preBackup); allowed by the annotation $ANNOTATION=true: those hooks fail until they name a Function that can run
function.stash.appscode.com \"short-lived-fn\" deleted" \
  kubectl delete functions.stash.appscode.com short-lived-fn
# The audit reports the broken reference as a Warning Event on the object.
eventually 60 "a Warning Event on demo/ratchet" has_events_on ratchet ExecutorFunctionNotFound
check 0 "Warning ExecutorFunctionNotFound spec.hooks.preBackup.executor.functionName: Function \"short-lived-fn\" not found: create the Function, or fix the name $LIST" \
  events_on ratchet ExecutorFunctionNotFound
# The webhook trusts its cache to allow: wait until it has seen the deletion (a new object naming
# the Function is denied), so that the update below meets a Function that is gone.
fresh_reference_denied() {
  [[ $(sed 's/^  name: ratchet$/  name: ratchet-probe/' $C/ratchet/backupconfiguration.yaml |
    kubectl create --dry-run=server -f - 2>&1) == *'Function "short-lived-fn" not found'* ]]
}
eventually 30 "the webhook sees short-lived-fn deleted" fresh_reference_denied
WARNING='Warning: spec.hooks.preBackup.executor.functionName: Function "short-lived-fn" not found; allowed because this reference is unchanged, but the hook will fail until it is fixed'
check 0 "$WARNING
backupconfiguration.stash.appscode.com/ratchet configured" \
  kubectl apply -f $C/ratchet/backupconfiguration-edited.yaml
check 0 "echo before, edited" \
  kubectl get -n demo backupconfigurations.stash.appscode.com ratchet -o 'jsonpath={.spec.hooks.preBackup.exec.command[2]}'
check 0 "$WARNING
backupconfiguration.stash.appscode.com/ratchet labeled" \
  kubectl label -n demo backupconfigurations.stash.appscode.com ratchet paused=true
# A changed reference that fails is denied.
check 1 "$(denied replacing $C/ratchet/backupconfiguration-renamed.yaml)spec.hooks.preBackup.executor.functionName: Function \"short-lived-fn-2\" not found: create the Function, or fix the name $LIST" \
  kubectl replace -f $C/ratchet/backupconfiguration-renamed.yaml
check 0 "short-lived-fn" \
  kubectl get -n demo backupconfigurations.stash.appscode.com ratchet -o 'jsonpath={.spec.hooks.preBackup.executor.functionName}'
# Created again, the Function resolves, and the audit says so.
check 0 "function.stash.appscode.com/short-lived-fn created" kubectl apply -f $C/ratchet/function.yaml
eventually 60 "a Normal Event on demo/ratchet" has_events_on ratchet ExecutorFunctionResolved
check 0 "Normal ExecutorFunctionResolved spec.hooks.preBackup.executor: the executor's Function resolves again" \
  events_on ratchet ExecutorFunctionResolved
check 0 "Warning ExecutorFunctionNotFound spec.hooks.preBackup.executor.functionName: Function \"short-lived-fn\" not found: create the Function, or fix the name $LIST" \
  events_on ratchet ExecutorFunctionNotFound
end

begin check-with-the-cluster-functions
# `check --cluster` takes the Functions from the cluster: what exists passes, a typo does not.
check 0 "1 object judged, 0 denied, 0 warned, 0 skipped" \
  "$WEBHOOK_BIN" check --cluster -f $C/ratchet/backupconfiguration.yaml
check 1 "$C/backupconfiguration-missing-function.yaml: BackupConfiguration demo/mysql-backup-typo: spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-exector\" not found: create the Function, or fix the name $LIST
1 object judged, 1 denied, 0 warned, 0 skipped" \
  "$WEBHOOK_BIN" check --cluster -f $C/backupconfiguration-missing-function.yaml
# The objects of update-ratchets-unchanged-reference, used here, go: the hook first, then the
# Function it named.
check 0 "backupconfiguration.stash.appscode.com \"ratchet\" deleted$(from_namespace demo)" \
  kubectl delete -f $C/ratchet/backupconfiguration.yaml
check 0 'function.stash.appscode.com "short-lived-fn" deleted' kubectl delete -f $C/ratchet/function.yaml
end

begin server-dry-run
check 1 "$(denied creating $C/restoresession-missing-function.yaml)spec.hooks.postRestore.executor.functionName: Function \"pg-restore-hook\" not found: create the Function, or fix the name $LIST" \
  kubectl apply --dry-run=server -f $C/restoresession-missing-function.yaml
check 1 "$(not_found restoresessions postgres-restore-typo)" \
  kubectl get -n demo restoresessions.stash.appscode.com postgres-restore-typo
check 0 "backupconfiguration.stash.appscode.com/plain-hooks created (server dry run)" \
  kubectl apply --dry-run=server -f $C/backupconfiguration-no-executor.yaml
check 1 "$(not_found backupconfigurations plain-hooks)" \
  kubectl get -n demo backupconfigurations.stash.appscode.com plain-hooks
end

begin function-and-user-in-one-apply
check 0 "function.stash.appscode.com/together-fn created
restoresession.stash.appscode.com/together created" \
  kubectl apply -f $C/together/
# The RestoreSession first: the Function it names is protected until then.
check 0 "restoresession.stash.appscode.com \"together\" deleted$(from_namespace demo)" \
  kubectl delete -f $C/together/restoresession.yaml
check 0 'function.stash.appscode.com "together-fn" deleted' kubectl delete -f $C/together/function.yaml
end

begin hook-without-executor
check 0 "backupconfiguration.stash.appscode.com/plain-hooks created" \
  kubectl apply -f $C/backupconfiguration-no-executor.yaml
check 0 "mysql" \
  kubectl get -n demo backupconfigurations.stash.appscode.com plain-hooks -o 'jsonpath={.spec.hooks.preBackup.containerName}'
check 0 "backupconfiguration.stash.appscode.com \"plain-hooks\" deleted$(from_namespace demo)" \
  kubectl delete -f $C/backupconfiguration-no-executor.yaml
end

# The Task cases: objects naming a Task in spec.task or spec.members[].task.
# shellcheck source-path=SCRIPTDIR source=task-cases.sh
source "$E2E_DIR/task-cases.sh"

# The KubeStash cases, on the current server only (the cases of Stash's kinds cover 1.20).
if [[ $E2E_SERVER == current ]]; then
  # shellcheck source-path=SCRIPTDIR source=kubestash-cases.sh
  source "$E2E_DIR/kubestash-cases.sh"
fi

begin lookup-refused-without-rbac
check 0 'clusterrolebinding.rbac.authorization.k8s.io "stash-webhook" deleted' \
  kubectl delete clusterrolebinding stash-webhook
eventually 60 "the webhook's identity loses get on Functions" can_i get no
check 1 "$(denied creating $C/backupconfiguration-unverifiable.yaml)spec.hooks.preBackup.executor.functionName: Function \"unlisted-fn\" could not be verified: the Kubernetes API refused the lookup (403 Forbidden: functions.stash.appscode.com \"unlisted-fn\" is forbidden: User \"$WEBHOOK_USER\" cannot get resource \"functions\" in API group \"stash.appscode.com\" at the cluster scope); grant the webhook's ServiceAccount get, list and watch on functions.stash.appscode.com: retry once the webhook can read Functions" \
  kubectl apply -f $C/backupconfiguration-unverifiable.yaml
# With the binding back, the same lookup answers again.
check 0 "serviceaccount/stash-webhook unchanged
clusterrole.rbac.authorization.k8s.io/stash-webhook unchanged
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook created
clusterrole.rbac.authorization.k8s.io/stash-webhook-kubestash unchanged
clusterrolebinding.rbac.authorization.k8s.io/stash-webhook-kubestash unchanged
role.rbac.authorization.k8s.io/stash-webhook-audit unchanged
rolebinding.rbac.authorization.k8s.io/stash-webhook-audit unchanged" \
  kubectl apply -f manifests/base/rbac.yaml
eventually 60 "the webhook's identity gets get on Functions back" can_i get yes
check 1 "$(denied creating $C/backupconfiguration-unverifiable.yaml)spec.hooks.preBackup.executor.functionName: Function \"unlisted-fn\" not found: create the Function, or fix the name $LIST" \
  kubectl apply -f $C/backupconfiguration-unverifiable.yaml
end

# Last: it stops the webhook the other cases use.
begin leader-election-across-two-processes
# A second replica: admission runs on both, the audit's Lease has one holder, and when that
# replica goes the other takes the Lease over.
e2e_free_port SECOND_PORT || CASE_PROBLEMS+=("no free port for the second replica")
e2e_spawn second env KUBECONFIG="$E2E_WEBHOOK_KUBECONFIG" "$WEBHOOK_BIN" serve \
  --listen "127.0.0.1:$SECOND_PORT" \
  --tls-cert "$WEBHOOK_PKI/serving.crt" --tls-key "$WEBHOOK_PKI/serving.key" \
  --pod-name replica-b --lease-duration 5s
holder() { kubectl get lease -n stash-system stash-webhook-audit -o 'jsonpath={.spec.holderIdentity}'; }
holder_is() { [[ $(holder 2>/dev/null) == "$1" ]]; }
second_ready() {
  [[ $(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$WEBHOOK_PKI/ca.crt" \
    "https://127.0.0.1:$SECOND_PORT/readyz" 2>/dev/null) == 200 ]]
}
eventually 60 "the second replica ready" second_ready
check 0 "replica-a" holder
e2e_kill webhook
eventually 60 "replica-b holds the Lease" holder_is replica-b
e2e_kill second
end

# With the webhook stopped (the case above stopped both replicas) and failurePolicy Fail, the API
# server refuses what it must send to the webhook, with its own message. With matchConditions (the
# current server) an object without an executor is not sent, and is admitted; on 1.20, without
# them, every write of the five kinds is sent, and refused.
begin writes-while-the-webhook-is-down
curl_refused() { ! curl -sS -o /dev/null --max-time 2 --cacert "$WEBHOOK_PKI/ca.crt" "$WEBHOOK_URL/readyz" 2>/dev/null; }
eventually 30 "nothing listens on $WEBHOOK_URL" curl_refused
# kube-apiserver 1.20 words a failed call without "failed to call webhook: ", which the current
# one adds.
if [[ $E2E_SERVER == 1.20 ]]; then CALL_FAILED=; else CALL_FAILED='failed to call webhook: '; fi
refused() { # refused FILE: kubectl's text when the API server cannot call the webhook for FILE
  printf 'Error from server (InternalError): error when creating "%s": Internal error occurred: failed calling webhook "%s": %sPost "%s/validate?timeout=5s": dial tcp 127.0.0.1:%s: connect: connection refused' \
    "$1" "$NAME" "$CALL_FAILED" "$WEBHOOK_URL" "$WEBHOOK_PORT"
}
if [[ $E2E_SERVER == 1.20 ]]; then
  check 1 "$(refused $C/backupconfiguration-no-hooks.yaml)" kubectl apply -f $C/backupconfiguration-no-hooks.yaml
  check 1 "$(not_found backupconfigurations no-hooks)" kubectl get -n demo backupconfigurations.stash.appscode.com no-hooks
else
  check 0 "backupconfiguration.stash.appscode.com/no-hooks created" kubectl apply -f $C/backupconfiguration-no-hooks.yaml
  check 0 "no-hooks" kubectl get -n demo backupconfigurations.stash.appscode.com no-hooks -o 'jsonpath={.metadata.name}'
  # DELETE never reaches the webhook.
  check 0 "backupconfiguration.stash.appscode.com \"no-hooks\" deleted$(from_namespace demo)" \
    kubectl delete -n demo backupconfigurations.stash.appscode.com no-hooks
fi
check 1 "$(refused $C/backupconfiguration-valid-executor.yaml)" kubectl apply -f $C/backupconfiguration-valid-executor.yaml
check 1 "$(not_found backupconfigurations valid-executor)" kubectl get -n demo backupconfigurations.stash.appscode.com valid-executor
# So is an object naming a Task (sent by the matchCondition too).
check 1 "$(refused $C/tasks/backupconfiguration-variable-given.yaml)" kubectl apply -f $C/tasks/backupconfiguration-variable-given.yaml
check 1 "$(not_found backupconfigurations dump)" kubectl get -n demo backupconfigurations.stash.appscode.com dump
end

# The current server's own cases: matchConditions, the overlays, the Helm chart.
if [[ $E2E_SERVER == current ]]; then
  # shellcheck source-path=SCRIPTDIR source=current-cases.sh
  source "$E2E_DIR/current-cases.sh"
fi

((FAILED == 0))
