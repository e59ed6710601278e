# The end-to-end cases of objects naming a Task (spec.task, spec.members[].task), sourced by run.sh
# on both servers while its webhook runs. The Tasks and Functions of cases/tasks.yaml exist; each
# case deletes what it creates, the object naming a Task first, then the Task, then its Functions.
# shellcheck shell=bash disable=SC2154 # the variables and functions of run.sh

T=tests/e2e/cases/tasks
TASKS_LIST='(kubectl get tasks.stash.appscode.com lists those installed)'

begin missing-task
check 1 "$(denied creating $T/backupconfiguration-missing-task.yaml)spec.task.name: Task \"mysql-backup-8.0.41\" not found: install the Stash addon that provides it $TASKS_LIST, or correct the name" \
  kubectl apply -f $T/backupconfiguration-missing-task.yaml
check 1 "$(not_found backupconfigurations wrong-task)" \
  kubectl get -n demo backupconfigurations.stash.appscode.com wrong-task
end

begin task-step-names-a-missing-function
check 1 "$(denied creating $T/restoresession-broken-step.yaml)spec.task.name: Task \"broken-step-task\", at its spec.steps[1].name: Function \"ghost-step-fn\" not found: create the Function, or fix the Task $LIST" \
  kubectl apply -f $T/restoresession-broken-step.yaml
check 1 "$(not_found restoresessions broken-step)" \
  kubectl get -n demo restoresessions.stash.appscode.com broken-step
end

begin task-step-function-without-image
check 1 "$(denied creating $T/backupblueprint-no-image-step.yaml)spec.task.name: Task \"no-image-task\", at its spec.steps[0].name: Function \"no-image-fn\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image-fn), or name another Function" \
  kubectl apply -f $T/backupblueprint-no-image-step.yaml
check 1 "$(not_found backupblueprints no-image-step)" \
  kubectl get backupblueprints.stash.appscode.com no-image-step
end

begin task-variable-unset-then-given
# shellcheck disable=SC2016 # ${level} is the webhook's text
check 1 "$(denied creating $T/backupconfiguration-unset-variable.yaml)spec.task.params: Function \"dump-fn\" (Task \"dump-task\", spec.steps[0]) reads \${level}, which neither that step's params nor spec.task.params set and Stash does not provide: add {name: level, value: ...} to spec.task.params, or give it a default in the Function (\${level:=...})" \
  kubectl apply -f $T/backupconfiguration-unset-variable.yaml
check 1 "$(not_found backupconfigurations dump)" kubectl get -n demo backupconfigurations.stash.appscode.com dump
# Given in spec.task.params, it is admitted, and stored as written (the CRD declares task).
check 0 "backupconfiguration.stash.appscode.com/dump created" \
  kubectl apply -f $T/backupconfiguration-variable-given.yaml
check 0 "dump-task level=9" kubectl get -n demo backupconfigurations.stash.appscode.com dump \
  -o 'jsonpath={.spec.task.name} {.spec.task.params[0].name}={.spec.task.params[0].value}'
check 0 "backupconfiguration.stash.appscode.com \"dump\" deleted$(from_namespace demo)" \
  kubectl delete -f $T/backupconfiguration-variable-given.yaml
end

begin backupbatch-member-with-a-broken-task
check 1 "$(denied creating $T/backupbatch-member-broken-task.yaml)spec.members[1].task.name: Task \"broken-step-task\", at its spec.steps[1].name: Function \"ghost-step-fn\" not found: create the Function, or fix the Task $LIST" \
  kubectl apply -f $T/backupbatch-member-broken-task.yaml
check 1 "$(not_found backupbatches batch-tasks)" kubectl get -n demo backupbatches.stash.appscode.com batch-tasks
end

begin task-functions-and-user-in-one-apply
# Neither the Task nor its steps' Functions are in the webhook's caches when the
# BackupConfiguration comes: the live GETs find them.
check 0 "function.stash.appscode.com/together-dump-fn created
function.stash.appscode.com/together-upload-fn created
task.stash.appscode.com/together-task created
backupconfiguration.stash.appscode.com/together-task-user created" \
  kubectl apply -f $T/together/
check 0 "backupconfiguration.stash.appscode.com \"together-task-user\" deleted$(from_namespace demo)" \
  kubectl delete -f $T/together/3-backupconfiguration.yaml
check 0 'task.stash.appscode.com "together-task" deleted' kubectl delete -f $T/together/2-task.yaml
check 0 'function.stash.appscode.com "together-dump-fn" deleted
function.stash.appscode.com "together-upload-fn" deleted' kubectl delete -f $T/together/1-functions.yaml
end

ANNOTATION=stash-webhook.stash.appscode.com/allow-breaking-references
PROTECT=protect.stash-webhook.stash.appscode.com

begin function-used-only-through-a-task-is-protected
# task-only-fn is named by no hook, only by the step of protected-task, which two objects name.
check 0 "function.stash.appscode.com/task-only-fn created" kubectl apply -f $T/protected/function.yaml
check 0 "task.stash.appscode.com/protected-task created" kubectl apply -f $T/protected/task.yaml
check 0 "backupconfiguration.stash.appscode.com/protected-task-backup created" \
  kubectl apply -f $T/protected/backupconfiguration.yaml
check 0 "restoresession.stash.appscode.com/protected-task-restore created" \
  kubectl apply -f $T/protected/restoresession.yaml
# Deleting the Function is denied, naming the Task, its step and the objects naming the Task.
check 1 "Error from server (Forbidden): admission webhook \"$PROTECT\" denied the request: Function \"task-only-fn\" is used by Task \"protected-task\" (spec.steps[0]), named by 2 objects: demo/BackupConfiguration/protected-task-backup (spec.task), demo/RestoreSession/protected-task-restore (spec.task): change or delete them first, or annotate the Function with $ANNOTATION=true" \
  kubectl delete functions.stash.appscode.com task-only-fn
# So is deleting the Task, naming the objects.
check 1 "Error from server (Forbidden): admission webhook \"$PROTECT\" denied the request: Task \"protected-task\" is used by 2 objects: demo/BackupConfiguration/protected-task-backup (spec.task), demo/RestoreSession/protected-task-restore (spec.task): change or delete them first, or annotate the Task with $ANNOTATION=true" \
  kubectl delete tasks.stash.appscode.com protected-task
check 0 "task-only-fn protected-task" \
  kubectl get functions.stash.appscode.com/task-only-fn tasks.stash.appscode.com/protected-task -o 'jsonpath={.items[*].metadata.name}'
# With the objects gone, the Task and then its Function go too (protection lists live).
check 0 "backupconfiguration.stash.appscode.com \"protected-task-backup\" deleted$(from_namespace demo)" \
  kubectl delete -f $T/protected/backupconfiguration.yaml
check 0 "restoresession.stash.appscode.com \"protected-task-restore\" deleted$(from_namespace demo)" \
  kubectl delete -f $T/protected/restoresession.yaml
check 0 'task.stash.appscode.com "protected-task" deleted' kubectl delete -f $T/protected/task.yaml
check 0 'function.stash.appscode.com "task-only-fn" deleted' kubectl delete -f $T/protected/function.yaml
end

begin task-deleted-then-audited
check 0 "task.stash.appscode.com/short-lived-task created" kubectl apply -f $T/audit/task.yaml
check 0 "backupconfiguration.stash.appscode.com/task-audit created" \
  kubectl apply -f $T/audit/backupconfiguration.yaml
# Annotated, the Task in use is deleted, with a warning naming what breaks.
check 0 "task.stash.appscode.com/short-lived-task annotated" \
  kubectl annotate tasks.stash.appscode.com short-lived-task "$ANNOTATION=true"
check 0 "Warning: Task \"short-lived-task\" is used by 1 object: demo/BackupConfiguration/task-audit (spec.task); allowed by the annotation $ANNOTATION=true: those objects fail until they name a Task that can run
task.stash.appscode.com \"short-lived-task\" deleted" \
  kubectl delete tasks.stash.appscode.com short-lived-task
# The audit reports the broken reference as a Warning Event on the object.
eventually 60 "a Warning Event on demo/task-audit" has_events_on task-audit TaskNotFound
check 0 "Warning TaskNotFound spec.task.name: Task \"short-lived-task\" not found: install the Stash addon that provides it $TASKS_LIST, or correct the name" \
  events_on task-audit TaskNotFound
# Created again, the Task resolves, and the audit says so.
check 0 "task.stash.appscode.com/short-lived-task created" kubectl apply -f $T/audit/task.yaml
eventually 60 "a Normal Event on demo/task-audit" has_events_on task-audit TaskResolved
check 0 "Normal TaskResolved spec.task: the Task resolves and can run again" events_on task-audit TaskResolved
check 0 "backupconfiguration.stash.appscode.com \"task-audit\" deleted$(from_namespace demo)" \
  kubectl delete -f $T/audit/backupconfiguration.yaml
check 0 'task.stash.appscode.com "short-lived-task" deleted' kubectl delete -f $T/audit/task.yaml
end
