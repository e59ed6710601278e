# The end-to-end cases of KubeStash objects (core.kubestash.com, addons.kubestash.com), sourced by
# run.sh on the current server only, while its webhook runs. The Addon, Functions and
# HookTemplates of cases/kubestash/catalog.yaml are created first and deleted last; each case
# deletes what it creates, the object naming a referent first.
# shellcheck shell=bash disable=SC2154 # the variables and functions of run.sh

K=tests/e2e/cases/kubestash
KS_NAME=validate-kubestash.stash-webhook.stash.appscode.com
KS_ADDONS='(list them with: kubectl get addons.addons.kubestash.com)'
KS_FUNCTIONS='(list them with: kubectl get functions.addons.kubestash.com)'
KS_HOOK_TEMPLATES='(list them with: kubectl get hooktemplates.core.kubestash.com -A)'
ks_denied() { # ks_denied FILE: what kubectl prints before the webhook's message for a create of FILE
  printf 'Error from server (Forbidden): error when creating "%s": admission webhook "%s" denied the request: ' "$1" "$KS_NAME"
}
# ks_refused FILE NAME MESSAGE: applying FILE is denied with MESSAGE, and the KubeStash
# BackupConfiguration NAME it holds is not stored.
ks_refused() {
  check 1 "$(ks_denied "$1")$3" kubectl apply -f "$1"
  check 1 "Error from server (NotFound): backupconfigurations.core.kubestash.com \"$2\" not found" \
    kubectl get -n demo backupconfigurations.core.kubestash.com "$2"
}

begin kubestash-catalog-created
# Each referent created so that it cannot run is allowed, with a warning from the protect webhook.
check 0 "function.addons.kubestash.com/e2e-backup-fn created
function.addons.kubestash.com/e2e-restore-fn created
Warning: spec.image: Function \"e2e-no-image-fn\" has no container image (its spec.image is not set): an Addon task or HookTemplate that runs it fails until it is fixed (give the Function a valid spec.image)
function.addons.kubestash.com/e2e-no-image-fn created
function.addons.kubestash.com/e2e-hook-fn created
Warning: spec.backupTasks[1].function: backup task \"no-image-backup\" of Addon \"e2e-addon\" runs Function \"e2e-no-image-fn\" (functions.addons.kubestash.com), which has no container image (its spec.image is not set): give the Function a valid spec.image (kubectl edit functions.addons.kubestash.com e2e-no-image-fn)
addon.addons.kubestash.com/e2e-addon created
hooktemplate.core.kubestash.com/e2e-hook created
Warning: spec.executor.function.name: HookTemplate \"demo/e2e-ghost-fn-hook\" runs Function \"e2e-ghost-hook-fn\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it (list them with: kubectl get functions.addons.kubestash.com)
hooktemplate.core.kubestash.com/e2e-ghost-fn-hook created" \
  kubectl apply -f $K/catalog.yaml
end

begin kubestash-missing-addon
ks_refused $K/backupconfiguration-missing-addon.yaml ks-missing-addon "spec.sessions[0].addon.name: Addon \"e2e-ghost-addon\" not found: install the KubeStash addon that provides it, or fix the name $KS_ADDONS"
end

begin kubestash-task-not-in-addon
ks_refused $K/backupconfiguration-missing-task.yaml ks-missing-task "spec.sessions[0].addon.tasks[0].name: Addon \"e2e-addon\" has no backup task \"logical-bakup\": name one of Addon \"e2e-addon\"'s backup tasks (it has logical-backup, no-image-backup)"
end

begin kubestash-task-function-without-image
ks_refused $K/backupconfiguration-no-image-function.yaml ks-no-image "spec.sessions[0].addon.tasks[0].name: backup task \"no-image-backup\" of Addon \"e2e-addon\" runs Function \"e2e-no-image-fn\" (functions.addons.kubestash.com), which has no container image (its spec.image is not set): give the Function a valid spec.image (kubectl edit functions.addons.kubestash.com e2e-no-image-fn)"
end

begin kubestash-missing-required-parameter
ks_refused $K/backupconfiguration-missing-parameter.yaml ks-missing-param "spec.sessions[0].addon.tasks[0].params: backup task \"logical-backup\" of Addon \"e2e-addon\" requires parameter \"databases\", which is not set and has no default: add params.databases"
end

begin kubestash-missing-hooktemplate
ks_refused $K/backupconfiguration-missing-hooktemplate.yaml ks-missing-hook "spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate \"e2e-ghost-hook\" not found in namespace \"demo\": create it there, or set hookTemplate.namespace to the namespace that has it $KS_HOOK_TEMPLATES"
end

begin kubestash-hooktemplate-names-a-missing-function
ks_refused $K/backupconfiguration-hooktemplate-missing-function.yaml ks-ghost-hook-fn "spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate \"demo/e2e-ghost-fn-hook\" runs Function \"e2e-ghost-hook-fn\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it $KS_FUNCTIONS"
end

begin kubestash-catalog-and-user-in-one-apply
# None of the Addon, the Functions and the HookTemplate is in the webhook's caches when the
# BackupConfiguration comes: the live GETs find them. The Addon comes before its Function, so it
# is created with a warning that the Function does not exist yet.
check 0 "Warning: spec.backupTasks[0].function: backup task \"logical-backup\" of Addon \"together-addon\" runs Function \"together-backup-fn\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it (list them with: kubectl get functions.addons.kubestash.com)
addon.addons.kubestash.com/together-addon created
function.addons.kubestash.com/together-backup-fn created
function.addons.kubestash.com/together-hook-fn created
hooktemplate.core.kubestash.com/together-hook created
backupconfiguration.core.kubestash.com/together-user created" \
  kubectl apply -f $K/together/
check 0 "backupconfiguration.core.kubestash.com \"together-user\" deleted$(from_namespace demo)" \
  kubectl delete -f $K/together/4-backupconfiguration.yaml
check 0 "hooktemplate.core.kubestash.com \"together-hook\" deleted$(from_namespace demo)" \
  kubectl delete -f $K/together/3-hooktemplate.yaml
check 0 'function.addons.kubestash.com "together-backup-fn" deleted
function.addons.kubestash.com "together-hook-fn" deleted' kubectl delete -f $K/together/2-functions.yaml
check 0 'addon.addons.kubestash.com "together-addon" deleted' kubectl delete -f $K/together/1-addon.yaml
end

begin kubestash-valid-restoresession
check 0 "restoresession.core.kubestash.com/ks-restore created" \
  kubectl apply -f $K/restoresession-valid.yaml
check 0 "restoresession.core.kubestash.com \"ks-restore\" deleted$(from_namespace demo)" \
  kubectl delete -f $K/restoresession-valid.yaml
end

# --- protection ------------------------------------------------------------------------------
# While the catalog above exists: deleting an Addon in use is denied by the protect webhook; a
# HookTemplate in use, deleted with the override annotation, is followed by the audit's Event on
# the object that names it, and by a Normal one once it is back.
KS_PROTECT=protect-kubestash.stash-webhook.stash.appscode.com

begin kubestash-addon-in-use-is-protected
check 0 "backupconfiguration.core.kubestash.com/ks-protected created" \
  kubectl apply -f $K/protected/backupconfiguration.yaml
check 1 "Error from server (Forbidden): admission webhook \"$KS_PROTECT\" denied the request: Addon \"e2e-addon\" is used by 1 reference: demo/BackupConfiguration/ks-protected (spec.sessions[0].addon): change or delete them first, or annotate the Addon with $ANNOTATION=true" \
  kubectl delete addons.addons.kubestash.com e2e-addon
check 0 "e2e-addon" kubectl get addons.addons.kubestash.com e2e-addon -o 'jsonpath={.metadata.name}'
check 0 "backupconfiguration.core.kubestash.com \"ks-protected\" deleted$(from_namespace demo)" \
  kubectl delete -f $K/protected/backupconfiguration.yaml
end

begin kubestash-hooktemplate-deleted-then-audited
check 0 "hooktemplate.core.kubestash.com/e2e-short-lived-hook created" \
  kubectl apply -f $K/audit/hooktemplate.yaml
check 0 "backupconfiguration.core.kubestash.com/ks-hook-audit created" \
  kubectl apply -f $K/audit/backupconfiguration.yaml
check 0 "hooktemplate.core.kubestash.com/e2e-short-lived-hook annotated" \
  kubectl annotate -n demo hooktemplates.core.kubestash.com e2e-short-lived-hook "$ANNOTATION=true"
check 0 "Warning: HookTemplate \"demo/e2e-short-lived-hook\" is used by 1 reference: demo/BackupConfiguration/ks-hook-audit (spec.sessions[0].hooks.preBackup[0]); allowed by the annotation $ANNOTATION=true: those objects fail until HookTemplate \"demo/e2e-short-lived-hook\" exists again, or they are changed
hooktemplate.core.kubestash.com \"e2e-short-lived-hook\" deleted$(from_namespace demo)" \
  kubectl delete -n demo hooktemplates.core.kubestash.com e2e-short-lived-hook
eventually 60 "a Warning Event on demo/ks-hook-audit" has_events_on ks-hook-audit HookTemplateNotFound
check 0 "Warning HookTemplateNotFound spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate \"e2e-short-lived-hook\" not found in namespace \"demo\": create it there, or set hookTemplate.namespace to the namespace that has it $KS_HOOK_TEMPLATES" \
  events_on ks-hook-audit HookTemplateNotFound
check 0 "hooktemplate.core.kubestash.com/e2e-short-lived-hook created" \
  kubectl apply -f $K/audit/hooktemplate.yaml
eventually 60 "a Normal Event on demo/ks-hook-audit" has_events_on ks-hook-audit HookTemplateResolved
check 0 "Normal HookTemplateResolved spec.sessions[0].hooks.preBackup[0]: the HookTemplate resolves and can run again" \
  events_on ks-hook-audit HookTemplateResolved
check 0 "backupconfiguration.core.kubestash.com \"ks-hook-audit\" deleted$(from_namespace demo)" \
  kubectl delete -f $K/audit/backupconfiguration.yaml
check 0 "hooktemplate.core.kubestash.com \"e2e-short-lived-hook\" deleted$(from_namespace demo)" \
  kubectl delete -f $K/audit/hooktemplate.yaml
end

begin kubestash-catalog-deleted
check 0 "hooktemplate.core.kubestash.com \"e2e-hook\" deleted$(from_namespace demo)
hooktemplate.core.kubestash.com \"e2e-ghost-fn-hook\" deleted$(from_namespace demo)" \
  kubectl delete hooktemplates.core.kubestash.com -n demo e2e-hook e2e-ghost-fn-hook
check 0 'function.addons.kubestash.com "e2e-backup-fn" deleted
function.addons.kubestash.com "e2e-restore-fn" deleted
function.addons.kubestash.com "e2e-no-image-fn" deleted
function.addons.kubestash.com "e2e-hook-fn" deleted' \
  kubectl delete functions.addons.kubestash.com e2e-backup-fn e2e-restore-fn e2e-no-image-fn e2e-hook-fn
check 0 'addon.addons.kubestash.com "e2e-addon" deleted' kubectl delete addons.addons.kubestash.com e2e-addon
end
