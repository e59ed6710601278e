//! The Kubernetes manifests under `manifests/`, rendered with `kubectl kustomize` exactly as they
//! are installed, and checked for what the webhook needs to work and to be safe.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};
use stash_webhook::check;
use stash_webhook::kubestash;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::stash::{
    executor_refs, task_refs, SpecHooks, StashKind, STASH_GROUP, STASH_VERSION,
};
use support::kustomize::{documents, kustomize, overlay_with};

const NAMESPACE: &str = "stash-system";
const NAME: &str = "stash-webhook";
const WEBHOOK_NAME: &str = "validate.stash-webhook.stash.appscode.com";
const PROTECT_NAME: &str = "protect.stash-webhook.stash.appscode.com";
const KUBESTASH_WEBHOOK_NAME: &str = "validate-kubestash.stash-webhook.stash.appscode.com";
const KUBESTASH_PROTECT_NAME: &str = "protect-kubestash.stash-webhook.stash.appscode.com";
/// Every webhook of the configuration, in order.
const WEBHOOK_NAMES: [&str; 4] = [
    WEBHOOK_NAME,
    PROTECT_NAME,
    KUBESTASH_WEBHOOK_NAME,
    KUBESTASH_PROTECT_NAME,
];
const KUBESTASH_CORE: &str = "core.kubestash.com";
const KUBESTASH_ADDONS: &str = "addons.kubestash.com";
const KUBESTASH_VERSION: &str = "v1alpha1";
/// The KubeStash kinds judged on /validate (core.kubestash.com, all namespaced).
const KUBESTASH_JUDGED: [&str; 4] = [
    "backupconfigurations",
    "restoresessions",
    "backupbatches",
    "backupblueprints",
];
const TLS_SECRET: &str = "stash-webhook-tls";
const TLS_MOUNT: &str = "/etc/stash-webhook/tls";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> PathBuf {
    repo().join("manifests")
}

/// The one object of `kind` named `name`.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {found:?}"
    );
    found[0]
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// A list of strings, as a set.
fn strings(v: &Value) -> BTreeSet<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {s}"))
        })
        .collect()
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    items.into_iter().collect()
}

/// The webhook named `name` of the ValidatingWebhookConfiguration.
fn webhook_named<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    let webhooks = find(docs, "ValidatingWebhookConfiguration", NAME)["webhooks"]
        .as_array()
        .expect("webhooks");
    let found: Vec<_> = webhooks.iter().filter(|w| w["name"] == name).collect();
    assert_eq!(found.len(), 1, "one webhook {name}: {webhooks:?}");
    found[0]
}

/// The webhooks of the ValidatingWebhookConfiguration, in order.
fn webhooks(docs: &[Value]) -> &Vec<Value> {
    find(docs, "ValidatingWebhookConfiguration", NAME)["webhooks"]
        .as_array()
        .expect("webhooks")
}

fn base() -> Vec<Value> {
    kustomize(&manifests().join("base"))
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    &containers[0]
}

#[test]
fn base_webhook_judges_create_and_update_of_the_five_hook_kinds_and_fails_closed() {
    let docs = base();
    let config = find(&docs, "ValidatingWebhookConfiguration", NAME);
    let webhooks = config["webhooks"].as_array().expect("webhooks");
    let names: Vec<&str> = webhooks
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, WEBHOOK_NAMES);
    let webhook = &webhooks[0];
    assert_eq!(webhook["name"], WEBHOOK_NAME);

    let client = &webhook["clientConfig"];
    assert_eq!(
        client["service"],
        json!({"name": NAME, "namespace": NAMESPACE, "path": "/validate", "port": 443})
    );
    assert!(
        client.get("caBundle").is_none(),
        "the overlays set caBundle, not base: {client}"
    );

    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(webhook["matchPolicy"], "Equivalent");
    assert_eq!(webhook["admissionReviewVersions"], json!(["v1"]));
    let timeout = webhook["timeoutSeconds"].as_u64().expect("timeoutSeconds");
    assert!((1..10).contains(&timeout), "timeoutSeconds {timeout}");

    let rules = webhook["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(strings(&rule["apiGroups"]), set([STASH_GROUP]));
    assert_eq!(strings(&rule["apiVersions"]), set([STASH_VERSION]));
    assert_eq!(strings(&rule["operations"]), set(["CREATE", "UPDATE"]));
    // Exactly the judged kinds, main resource only: no `*`, no `/status`.
    assert_eq!(
        strings(&rule["resources"]),
        set(StashKind::ALL.map(StashKind::plural))
    );
    assert_eq!(rule["scope"], "*");

    let expressions = webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("namespaceSelector.matchExpressions");
    let excluded: BTreeSet<&str> = expressions
        .iter()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .collect();
    assert!(
        excluded.is_superset(&set([NAMESPACE, "kube-system"])),
        "namespaceSelector must exclude {NAMESPACE} and kube-system: {expressions:?}"
    );

    // The Service it calls exists and leads to the container's https port.
    let service = find(&docs, "Service", NAME);
    assert_eq!(service["metadata"]["namespace"], NAMESPACE);
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["port"] == 443 && p["targetPort"] == "https"),
        "Service port 443 -> https: {ports:?}"
    );
    let deployment = find(&docs, "Deployment", NAME);
    let selector = service["spec"]["selector"].as_object().expect("selector");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        assert_eq!(&pod_labels[key], value, "Service selector {key}");
    }
}

#[test]
fn protect_webhook_judges_functions_and_tasks_and_fails_closed() {
    let docs = base();
    let config = find(&docs, "ValidatingWebhookConfiguration", NAME);
    let webhook = &config["webhooks"][1];
    assert_eq!(webhook["name"], PROTECT_NAME);
    assert_eq!(
        webhook["clientConfig"]["service"],
        json!({"name": NAME, "namespace": NAMESPACE, "path": "/protect", "port": 443})
    );
    assert_eq!(
        webhook["rules"],
        json!([{"apiGroups": [STASH_GROUP], "apiVersions": [STASH_VERSION],
                "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["functions", "tasks"], "scope": "Cluster"}])
    );
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(webhook["sideEffects"], "None");
    assert!(webhook.get("matchConditions").is_none());
    // The server's --protect-timeout (5s) is half of it: all of it is used.
    assert_eq!(webhook["timeoutSeconds"], 10);
}

/// The settings each KubeStash webhook has as its Stash counterpart has them.
const SHARED_SETTINGS: [&str; 6] = [
    "failurePolicy",
    "sideEffects",
    "timeoutSeconds",
    "matchPolicy",
    "admissionReviewVersions",
    "namespaceSelector",
];

#[test]
fn kubestash_webhook_judges_create_and_update_of_the_four_kinds_like_the_stash_one() {
    let docs = base();
    let webhook = webhook_named(&docs, KUBESTASH_WEBHOOK_NAME);
    let stash = webhook_named(&docs, WEBHOOK_NAME);
    let client = &webhook["clientConfig"];
    assert_eq!(
        client["service"],
        json!({"name": NAME, "namespace": NAMESPACE, "path": "/validate", "port": 443})
    );
    assert!(client.get("caBundle").is_none(), "{client}");

    let rules = webhook["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(strings(&rule["apiGroups"]), set([KUBESTASH_CORE]));
    assert_eq!(strings(&rule["apiVersions"]), set([KUBESTASH_VERSION]));
    assert_eq!(strings(&rule["operations"]), set(["CREATE", "UPDATE"]));
    // Exactly the judged kinds, main resource only: no `*`, no `/status`.
    assert_eq!(strings(&rule["resources"]), set(KUBESTASH_JUDGED));
    assert_eq!(rule["scope"], "Namespaced");

    // The same guarantees as the Stash webhook: fails closed, no side effects, the same timeout,
    // and never in the webhook's own namespace or kube-system.
    for field in SHARED_SETTINGS {
        assert!(!webhook[field].is_null(), "{field}: {webhook}");
        assert_eq!(webhook[field], stash[field], "{field}");
    }
    assert_eq!(webhook["failurePolicy"], "Fail");

    let conditions = webhook["matchConditions"]
        .as_array()
        .expect("matchConditions");
    let names: Vec<&str> = conditions
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["names-an-addon-or-hook"]);
}

#[test]
fn kubestash_protect_webhook_judges_addons_functions_and_hook_templates_like_the_stash_one() {
    let docs = base();
    let webhook = webhook_named(&docs, KUBESTASH_PROTECT_NAME);
    let stash = webhook_named(&docs, PROTECT_NAME);
    assert_eq!(
        webhook["clientConfig"]["service"],
        json!({"name": NAME, "namespace": NAMESPACE, "path": "/protect", "port": 443})
    );
    // (group, version, resource, scope), each with every operation that can break a reference.
    let mut covered = BTreeSet::new();
    for rule in webhook["rules"].as_array().expect("rules") {
        assert_eq!(
            strings(&rule["operations"]),
            set(["CREATE", "UPDATE", "DELETE"]),
            "{rule}"
        );
        for group in strings(&rule["apiGroups"]) {
            for version in strings(&rule["apiVersions"]) {
                for resource in strings(&rule["resources"]) {
                    let scope = rule["scope"].as_str().expect("scope");
                    covered.insert((group, version, resource, scope));
                }
            }
        }
    }
    assert_eq!(
        covered,
        BTreeSet::from([
            (KUBESTASH_ADDONS, KUBESTASH_VERSION, "addons", "Cluster"),
            (KUBESTASH_ADDONS, KUBESTASH_VERSION, "functions", "Cluster"),
            (
                KUBESTASH_CORE,
                KUBESTASH_VERSION,
                "hooktemplates",
                "Namespaced"
            ),
        ])
    );
    for field in SHARED_SETTINGS.iter().chain(&["matchConditions"]) {
        assert_eq!(webhook.get(field), stash.get(field), "{field}");
    }
    assert!(webhook.get("matchConditions").is_none());
}

#[test]
fn cluster_role_grants_reads_and_events_and_a_role_the_lease() {
    let docs = base();
    let role = find(&docs, "ClusterRole", NAME);
    let kubestash_role = find(&docs, "ClusterRole", "stash-webhook-kubestash");
    let rules: Vec<&Value> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .chain(kubestash_role["rules"].as_array().expect("rules"))
        .collect();
    assert_eq!(rules.len(), 4, "{rules:?}");
    for rule in &rules {
        let rule = rule.as_object().expect("rule");
        assert_eq!(
            rule.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            set(["apiGroups", "resources", "verbs"]),
            "no resourceNames or nonResourceURLs: {rule:?}"
        );
    }
    // One rule per API group, reading exactly what the webhook reads: Stash's in the webhook's
    // role, KubeStash's in a role of their own.
    let mut stash_read = set(StashKind::ALL.map(StashKind::plural));
    stash_read.insert("functions");
    stash_read.insert("tasks");
    let reads = [
        (STASH_GROUP, stash_read),
        (KUBESTASH_ADDONS, set(["addons", "functions"])),
        (
            KUBESTASH_CORE,
            set([
                "hooktemplates",
                "backupconfigurations",
                "restoresessions",
                "backupbatches",
                "backupblueprints",
            ]),
        ),
    ];
    for ((group, resources), rule) in reads.iter().zip([rules[0], rules[2], rules[3]]) {
        assert_eq!(strings(&rule["apiGroups"]), set([*group]), "{rule}");
        assert_eq!(&strings(&rule["resources"]), resources, "{group}");
        assert_eq!(
            strings(&rule["verbs"]),
            set(["get", "list", "watch"]),
            "{group}"
        );
    }
    // Every resource a KubeStash webhook judges is readable.
    for resource in KUBESTASH_JUDGED {
        assert!(reads[2].1.contains(resource), "{resource}");
    }
    assert_eq!(strings(&rules[1]["apiGroups"]), set(["events.k8s.io"]));
    assert_eq!(strings(&rules[1]["resources"]), set(["events"]));
    assert_eq!(strings(&rules[1]["verbs"]), set(["create", "patch"]));
    assert_eq!(of_kind(&docs, "ClusterRole").len(), 2);
    for (binding, role) in [
        (NAME, NAME),
        ("stash-webhook-kubestash", "stash-webhook-kubestash"),
    ] {
        let binding = find(&docs, "ClusterRoleBinding", binding);
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}])
        );
    }

    // The Lease, in the webhook's own namespace only.
    let lease_role = find(&docs, "Role", "stash-webhook-audit");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        lease_role["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]}])
    );
    let lease_binding = find(&docs, "RoleBinding", "stash-webhook-audit");
    assert_eq!(
        lease_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}])
    );

    find(&docs, "ServiceAccount", NAME);
    let deployment = find(&docs, "Deployment", NAME);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        NAME
    );
}

#[test]
fn deployment_runs_two_hardened_replicas_with_https_probes() {
    let docs = base();
    let deployment = find(&docs, "Deployment", NAME);
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let c = container(deployment);

    let ports: HashMap<&str, &Value> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].as_str().expect("port name"), &p["containerPort"]))
        .collect();
    assert_eq!(ports["https"], 8443);
    assert_eq!(ports["metrics"], 9090);

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "https", "{probe}");
    }

    // The container's settings, falling back to the pod's, as the kubelet applies them.
    let security = |field: &str| -> Value {
        let own = &c["securityContext"][field];
        if own.is_null() {
            pod["securityContext"][field].clone()
        } else {
            own.clone()
        }
    };
    assert_eq!(security("runAsNonRoot"), true);
    assert_eq!(security("runAsUser"), 65532);
    assert_eq!(
        security("seccompProfile"),
        json!({"type": "RuntimeDefault"})
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));

    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}: {}",
                c["resources"]
            );
        }
    }

    // Longer than the server's default --shutdown-grace of 20s.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(grace > 20, "terminationGracePeriodSeconds {grace}");

    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    let term = &anti[0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The TLS Secret, mounted read-only where --tls-cert and --tls-key point.
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == TLS_MOUNT)
        .expect("TLS mount");
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("TLS volume");
    assert_eq!(volume["secret"]["secretName"], TLS_SECRET);
    let args = strings(&c["args"]);
    assert!(args.contains(format!("--tls-cert={TLS_MOUNT}/tls.crt").as_str()));
    assert!(args.contains(format!("--tls-key={TLS_MOUNT}/tls.key").as_str()));

    let pdb = find(&docs, "PodDisruptionBudget", NAME);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn every_flag_in_the_deployment_args_exists_in_the_binary() {
    let docs = base();
    let args: Vec<&str> = container(find(&docs, "Deployment", NAME))["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    assert_eq!(args.first(), Some(&"serve"), "{args:?}");

    let output = Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
        .args(["serve", "--help"])
        .output()
        .expect("run stash-webhook serve --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    // Whole words only: `--log` must not pass because `--log-format` exists.
    let words: BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .collect();
    for arg in &args[1..] {
        assert!(arg.starts_with("--"), "{arg}: only --flag=value args");
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(
            words.contains(flag),
            "{flag} is not a flag of `stash-webhook serve`:\n{help}"
        );
    }
}

#[test]
fn cert_manager_overlay_injects_the_ca_of_a_certificate_for_the_service() {
    let docs = kustomize(&manifests().join("overlays/cert-manager"));
    let config = find(&docs, "ValidatingWebhookConfiguration", NAME);
    let from = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .expect("inject-ca-from annotation");
    assert_eq!(from, format!("{NAMESPACE}/{NAME}"));

    let (namespace, name) = from.split_once('/').expect("NAMESPACE/NAME");
    let cert = find(&docs, "Certificate", name);
    assert_eq!(cert["metadata"]["namespace"], namespace);
    assert_eq!(cert["spec"]["secretName"], TLS_SECRET);
    let dns = strings(&cert["spec"]["dnsNames"]);
    assert!(dns.contains("stash-webhook.stash-system.svc"), "{dns:?}");
    assert!(strings(&cert["spec"]["usages"]).contains("server auth"));

    // Signed by a CA Issuer of this overlay, whose CA is itself a Certificate here.
    let issuer = find(
        &docs,
        "Issuer",
        cert["spec"]["issuerRef"]["name"].as_str().expect("issuer"),
    );
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA Issuer");
    let ca = of_kind(&docs, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("the CA Certificate");
    assert_eq!(ca["spec"]["isCA"], true);
}

/// Copies `from` into `to`, leaving out `generated/` (made by `stash-webhook certs`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            if entry.file_name() != "generated" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn self_signed_overlay_uses_the_certificates_made_by_the_certs_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("manifests");
    copy_tree(&manifests(), &tree);
    let overlay = tree.join("overlays/self-signed");
    let generated = overlay.join("generated");
    let output = Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
        .args([
            "certs",
            "--service",
            NAME,
            "--namespace",
            NAMESPACE,
            "--out",
        ])
        .arg(&generated)
        .output()
        .expect("run stash-webhook certs");
    assert!(
        output.status.success(),
        "stash-webhook certs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let docs = kustomize(&overlay);
    let config = find(&docs, "ValidatingWebhookConfiguration", NAME);
    let ca_bundle = std::fs::read_to_string(generated.join("ca-bundle.b64")).expect("ca-bundle");
    let webhooks = config["webhooks"].as_array().expect("webhooks");
    // The patch sets them by position: it must cover every one.
    assert_eq!(webhooks.len(), stash_webhook::certs::WEBHOOKS);
    for webhook in webhooks {
        assert_eq!(webhook["clientConfig"]["caBundle"], ca_bundle.trim());
    }

    let secret = find(&docs, "Secret", TLS_SECRET);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
    for file in ["tls.crt", "tls.key"] {
        // kustomize wraps long base64 values over several lines.
        let data: String = secret["data"][file]
            .as_str()
            .unwrap_or_else(|| panic!("Secret data {file}"))
            .split_whitespace()
            .collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        let content = std::fs::read(generated.join(file)).expect(file);
        assert!(data == content, "Secret data {file} is generated/{file}");
    }
}

/// The objects of a rendering with the webhook configuration's `webhooks` taken out, and the
/// webhooks' names.
fn split_webhooks(docs: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut rest = docs.to_vec();
    let config = rest
        .iter_mut()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("ValidatingWebhookConfiguration");
    let webhooks = config
        .as_object_mut()
        .expect("config")
        .remove("webhooks")
        .expect("webhooks");
    let webhooks = webhooks.as_array().expect("webhooks").clone();
    (rest, webhooks)
}

#[test]
fn family_components_remove_exactly_their_two_webhooks() {
    let shipped = kustomize(&manifests().join("overlays/cert-manager"));
    let (shipped_rest, shipped_webhooks) = split_webhooks(&shipped);
    let without_match_conditions = |webhooks: Vec<Value>| -> Vec<Value> {
        webhooks
            .into_iter()
            .map(|mut w| {
                w.as_object_mut()
                    .expect("webhook")
                    .remove("matchConditions");
                w
            })
            .collect()
    };
    let only = |names: [&str; 2]| -> Vec<Value> {
        let found: Vec<Value> = shipped_webhooks
            .iter()
            .filter(|w| names.iter().any(|n| w["name"] == *n))
            .cloned()
            .collect();
        assert_eq!(found.len(), 2, "{names:?}");
        found
    };
    let kubestash = [KUBESTASH_WEBHOOK_NAME, KUBESTASH_PROTECT_NAME];
    let stash = [WEBHOOK_NAME, PROTECT_NAME];
    let cases: [(&[&str], Vec<Value>); 5] = [
        (&["no-stash"], only(kubestash)),
        (&["no-kubestash"], only(stash)),
        (
            &["no-match-conditions"],
            without_match_conditions(shipped_webhooks.clone()),
        ),
        (
            &["no-match-conditions", "no-stash"],
            without_match_conditions(only(kubestash)),
        ),
        (
            &["no-match-conditions", "no-kubestash"],
            without_match_conditions(only(stash)),
        ),
    ];
    // Without KubeStash, its ClusterRole and binding are left out and the webhook is told so.
    let without_kubestash: Vec<Value> = shipped_rest
        .iter()
        .filter(|d| d["metadata"]["name"] != "stash-webhook-kubestash")
        .cloned()
        .map(|mut d| {
            if d["kind"] == "Deployment" {
                let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .expect("env");
                env.insert(
                    0,
                    json!({"name": "STASH_WEBHOOK_KUBESTASH", "value": "false"}),
                );
            }
            d
        })
        .collect();
    assert_eq!(without_kubestash.len(), shipped_rest.len() - 2);
    for (components, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let docs = overlay_with(dir.path(), "cert-manager", components)
            .unwrap_or_else(|e| panic!("{components:?}: {e}"));
        let (rest, webhooks) = split_webhooks(&docs);
        // The remaining webhooks exactly as shipped, in the shipped order; every other object
        // and field unchanged, but for KubeStash's RBAC and switch.
        assert_eq!(webhooks, expected, "{components:?}");
        let expected_rest = match components.contains(&"no-kubestash") {
            true => &without_kubestash,
            false => &shipped_rest,
        };
        assert_eq!(&rest, expected_rest, "{components:?}");
    }

    // After a family component, no-match-conditions would find other webhooks at its positions:
    // the build fails instead of changing them (or adding a webhook back).
    for first in ["no-stash", "no-kubestash"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let components = [first, "no-match-conditions"];
        match overlay_with(dir.path(), "cert-manager", &components) {
            Ok(docs) => panic!("{components:?} builds: {:?}", webhooks(&docs)),
            Err(e) => assert!(e.contains("no-match-conditions"), "{components:?}: {e}"),
        }
    }
}

#[test]
fn crd_component_adds_executor_to_every_hook_schema() {
    let docs = kustomize(&repo().join("tests/fixtures/crds"));
    let executor = json!({
        "type": "object",
        "properties": {
            "functionName": {"type": "string"},
            "params": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    });
    let mut checked = 0;
    for kind in StashKind::ALL {
        let crd = find(
            &docs,
            "CustomResourceDefinition",
            &format!("{}.{STASH_GROUP}", kind.plural()),
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], STASH_VERSION);
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let mut hook_blocks = vec![("spec.hooks", &spec["hooks"])];
        if matches!(kind, StashKind::BackupBatch | StashKind::RestoreBatch) {
            hook_blocks.push((
                "spec.members[].hooks",
                &spec["members"]["items"]["properties"]["hooks"],
            ));
        }
        let hooks = match kind {
            StashKind::RestoreSession | StashKind::RestoreBatch => ["preRestore", "postRestore"],
            _ => ["preBackup", "postBackup"],
        };
        for (path, block) in hook_blocks {
            for hook in hooks {
                let properties = &block["properties"][hook]["properties"];
                assert_eq!(
                    properties["executor"], executor,
                    "{kind} {path}.{hook}.executor"
                );
                assert!(
                    properties["exec"].is_object(),
                    "{kind} {path}.{hook}: the existing fields are kept"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 14);
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests().join("examples"))
        .expect("manifests/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn read_documents(path: &Path) -> Vec<Value> {
    documents(&std::fs::read_to_string(path).expect("read example"))
}

#[test]
fn examples_parse_and_functions_yaml_has_the_functions_and_tasks_the_readme_names() {
    let files = example_files();
    assert!(files.len() >= 8, "{files:?}");
    let stash = format!("{STASH_GROUP}/{STASH_VERSION}");
    let core = format!("{KUBESTASH_CORE}/{KUBESTASH_VERSION}");
    let addons = format!("{KUBESTASH_ADDONS}/{KUBESTASH_VERSION}");
    for file in &files {
        let docs = read_documents(file);
        assert!(!docs.is_empty(), "{}", file.display());
        // A KubeStash example says so in its file name.
        let kubestash = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("kubestash-"));
        for doc in &docs {
            let api_version = doc["apiVersion"].as_str().expect("apiVersion");
            if file.ends_with("functions.yaml") {
                assert!(
                    [&stash, &core, &addons].contains(&&api_version.to_owned()),
                    "{api_version}"
                );
            } else if kubestash {
                assert_eq!(api_version, core, "{}", file.display());
            } else {
                assert_eq!(api_version, stash, "{}", file.display());
            }
            assert!(doc["metadata"]["name"].is_string(), "{}", file.display());
        }
    }

    let functions = read_documents(&manifests().join("examples/functions.yaml"));
    let names: Vec<String> = functions
        .iter()
        .map(|f| {
            let kind = f["kind"].as_str().expect("kind");
            let api_version = f["apiVersion"].as_str().expect("apiVersion");
            let group = api_version.split_once('/').expect("group/version").0;
            let name = f["metadata"]["name"].as_str().expect("name");
            match (group, kind) {
                (STASH_GROUP, "Function" | "Task") => format!("{kind} {name}"),
                (KUBESTASH_ADDONS, "Addon" | "Function") | (KUBESTASH_CORE, "HookTemplate") => {
                    format!("{kind}.{group} {name}")
                }
                _ => panic!("{api_version} {kind} {name}"),
            }
        })
        .collect();
    assert_eq!(
        names,
        [
            "Function mysql-hook-executor",
            "Function postgres-hook-executor",
            "Function no-image-fn",
            "Function mysql-backup",
            "Function postgres-backup",
            "Function postgres-restore",
            "Function update-status",
            "Task mysql-backup-8.0.14",
            "Task postgres-backup-16.1",
            "Task postgres-restore-16.1",
            "Function.addons.kubestash.com mysql-logical-backup",
            "Function.addons.kubestash.com mysql-logical-restore",
            "Function.addons.kubestash.com mysql-read-only",
            "Addon.addons.kubestash.com mysql-addon",
            "HookTemplate.core.kubestash.com mysql-read-only",
        ]
    );
}

/// Each example is judged by `stash-webhook check`'s own reader and rules, against the catalog of
/// `functions.yaml` (Stash's Functions and Tasks, KubeStash's Addon, Functions and HookTemplate),
/// as the README says: `-valid` files allowed, the others denied with the text
/// the README quotes.
#[test]
fn examples_are_judged_as_their_readme_says() {
    let examples = manifests().join("examples");
    let (files, errors) = check::read_inputs(&check::Inputs {
        paths: vec![examples.clone()],
        recursive: false,
    });
    assert!(errors.is_empty(), "{errors:?}");
    let report = check::judge(
        &files,
        &check::catalog_in(&files),
        check::Tasks::Known,
        &FailurePolicy::Deny.into(),
    );
    let readme = std::fs::read_to_string(examples.join("README.md")).expect("examples README");

    for file in example_files() {
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        if file_name == "functions.yaml" {
            continue;
        }
        assert!(readme.contains(&file_name), "README.md names {file_name}");
        for object in read_documents(&file) {
            let kind_name = object["kind"].as_str().expect("kind");
            let api_version = object["apiVersion"].as_str().expect("apiVersion");
            let (group, version) = api_version.split_once('/').expect("group/version");
            if let Some(kind) = StashKind::from_gvk(group, version, kind_name) {
                let spec = SpecHooks::from_value(&object["spec"]).unwrap();
                assert!(
                    !executor_refs(kind, &spec).is_empty() || !task_refs(kind, &spec).is_empty(),
                    "{file_name}: an example names an executor or a Task"
                );
            } else {
                let kind = kubestash::kind(group, version, kind_name)
                    .unwrap_or_else(|| panic!("{file_name}: not a judged kind"));
                let refs = kubestash::references(kind, &object, "demo");
                let is_addon =
                    |r: &kubestash::Reference| matches!(r.named, kubestash::Named::Addon(_));
                // Some references name an Addon, the others a HookTemplate.
                assert!(
                    refs.iter().any(is_addon) && !refs.iter().all(is_addon),
                    "{file_name}: a KubeStash example names an Addon and a HookTemplate"
                );
            }
            let name = object["metadata"]["name"].as_str().expect("name");
            let judged = report
                .objects
                .iter()
                .find(|j| j.file == file.display().to_string() && j.name == name)
                .unwrap_or_else(|| panic!("{file_name}: {name} was not judged"));
            if file_name.ends_with("-valid.yaml") {
                assert!(
                    judged.denials.is_empty(),
                    "{file_name}: {:?}",
                    judged.denials
                );
                // The KubeStash catalog of functions.yaml is whole: no warning either.
                if file_name.starts_with("kubestash-") {
                    assert!(
                        judged.warnings.is_empty(),
                        "{file_name}: {:?}",
                        judged.warnings
                    );
                }
            } else {
                assert!(!judged.denials.is_empty(), "{file_name} is denied");
                let message = judged.denials.join("\n");
                assert!(
                    readme.contains(&message),
                    "README.md quotes the denial of {file_name}:\n{message}"
                );
            }
        }
    }
}
