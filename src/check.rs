//! `stash-webhook check`: the server's rules and messages over files, before they reach a
//! cluster (a CI pipeline, a pull request). Every hook-bearing object is judged as a CREATE.
//! Functions and Tasks in the same input count as existing, as in one `kubectl apply -f dir/`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::documents::{self, Document};
use crate::kubestash;
use crate::rules::kubestash as ks_rules;
use crate::rules::tasks::{self as task_rules, Task};
use crate::rules::{self, Function, Policy, Resolution};
use crate::stash::{executor_refs, task_refs, SpecHooks, StashKind};

pub use crate::functions::list_functions;
pub use crate::sources::Catalog;
pub use crate::tasks::list_tasks;

/// What `-f -` reads.
pub const STDIN: &str = "-";

/// Where the judged files are, and what else counts.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Files, directories, or `-` for standard input.
    pub paths: Vec<PathBuf>,
    /// Read directories' subdirectories too.
    pub recursive: bool,
}

/// One object judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judged {
    pub file: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// One line per problem, as the server's denial lists them (but all of them).
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
}

impl Judged {
    /// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
    fn object(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// A file that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub file: String,
    pub reason: String,
}

/// Everything `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub objects: Vec<Judged>,
    pub errors: Vec<Unreadable>,
    /// Objects of kinds this webhook does not judge (Functions included).
    pub skipped: usize,
}

impl Report {
    pub fn denied(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| !o.denials.is_empty())
            .count()
    }

    pub fn warned(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.denials.is_empty() && !o.warnings.is_empty())
            .count()
    }

    /// 2 when an input could not be read, else 1 when an object is denied, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if self.denied() > 0 {
            1
        } else {
            0
        }
    }

    /// One line per problem, `FILE: Kind namespace/name: LINE` (warnings marked `warning:`), one
    /// per unreadable file, then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for error in &self.errors {
            out.push_str(&format!("{}: error: {}\n", error.file, error.reason));
        }
        for object in &self.objects {
            for line in &object.denials {
                out.push_str(&format!("{}: {}: {line}\n", object.file, object.object()));
            }
            for line in &object.warnings {
                out.push_str(&format!(
                    "{}: {}: warning: {line}\n",
                    object.file,
                    object.object()
                ));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `3 objects judged, 1 denied, 1 warned, 12 skipped`, and the unreadable files if any.
    pub fn summary(&self) -> String {
        let judged = self.objects.len();
        let mut line = format!(
            "{judged} {} judged, {} denied, {} warned, {} skipped",
            if judged == 1 { "object" } else { "objects" },
            self.denied(),
            self.warned(),
            self.skipped
        );
        if !self.errors.is_empty() {
            line.push_str(&format!(", {} unreadable", self.errors.len()));
        }
        line
    }

    /// The same content as one JSON document, for tools.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a Report,
            judged: usize,
            denied: usize,
            warned: usize,
        }
        let out = Out {
            report: self,
            judged: self.objects.len(),
            denied: self.denied(),
            warned: self.warned(),
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
    }
}

/// A file's name as the report shows it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The files `inputs` names: each file as given, each directory's `.yaml`, `.yml` and `.json`
/// files in name order (and its subdirectories' with `recursive`), as `kubectl apply -f` reads
/// them. What cannot be listed is reported.
fn files(inputs: &Inputs, errors: &mut Vec<Unreadable>) -> Vec<PathBuf> {
    fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>, errors: &mut Vec<Unreadable>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                errors.push(Unreadable {
                    file: shown(dir),
                    reason: format!("cannot read the directory: {err}"),
                });
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                if recursive {
                    walk(&path, recursive, out, errors);
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for path in &inputs.paths {
        if path.as_os_str() != STDIN && path.is_dir() {
            walk(path, inputs.recursive, &mut out, errors);
        } else {
            out.push(path.clone());
        }
    }
    out
}

/// Reads `path` (or standard input for `-`).
fn read_text(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == STDIN {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
}

/// The objects of every input, by file; the files that could not be read or parsed are
/// reported, and the others still read.
pub fn read_inputs(inputs: &Inputs) -> (Vec<(String, Vec<Document>)>, Vec<Unreadable>) {
    let mut errors = Vec::new();
    let mut read = Vec::new();
    for path in files(inputs, &mut errors) {
        let file = if path.as_os_str() == STDIN {
            "<stdin>".to_owned()
        } else {
            shown(&path)
        };
        match read_text(&path) {
            Err(err) => errors.push(Unreadable {
                file,
                reason: format!("cannot read: {err}"),
            }),
            Ok(text) => match documents::read(&text) {
                Ok(docs) => read.push((file, docs)),
                Err(err) => errors.push(Unreadable {
                    file,
                    reason: err.to_string(),
                }),
            },
        }
    }
    (read, errors)
}

/// The Functions and Tasks among `files`, by name.
pub fn catalog_in(files: &[(String, Vec<Document>)]) -> Catalog {
    Catalog::of_documents(files.iter().flat_map(|(_, docs)| docs))
}

/// What Task names are checked against: the Tasks known, all there are (a name not among them is
/// not found); or none at all (no cluster, no Task in any file), and Task names are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tasks {
    Known,
    NotGiven,
}

/// Judges every hook-bearing object of `files` against `catalog` (all the Functions there are, and
/// all the Tasks when `tasks` is [`Tasks::Known`]).
pub fn judge(
    files: &[(String, Vec<Document>)],
    catalog: &Catalog,
    tasks: Tasks,
    policy: &Policy,
) -> Report {
    fn lookup<T>(items: &HashMap<String, Arc<T>>, name: &str) -> Resolution<T> {
        match items.get(name) {
            Some(item) => Resolution::Found(item.clone()),
            None => Resolution::NotFound,
        }
    }
    let mut report = Report::default();
    for (file, docs) in files {
        for doc in docs {
            let (group, version) = doc
                .api_version()
                .split_once('/')
                .unwrap_or(("", doc.api_version()));
            if let Some(kind) = kubestash::kind(group, version, doc.kind()) {
                report
                    .objects
                    .push(judge_kubestash(file, doc, kind, catalog, policy));
                continue;
            }
            let Some(kind) = StashKind::from_gvk(group, version, doc.kind()) else {
                report.skipped += 1;
                continue;
            };
            let spec = doc.object.get("spec").unwrap_or(&Value::Null);
            // A spec read from a JSON value cannot hold what fails a decode (text that is not
            // JSON, a key given twice); should it, the object counts as having no hooks.
            let spec = SpecHooks::from_value(spec).unwrap_or_default();
            let refs = executor_refs(kind, &spec);
            let uses = task_refs(kind, &spec);
            let task_resolutions: HashMap<&str, Resolution<Task>> =
                task_rules::names_to_resolve(&uses)
                    .into_iter()
                    .map(|name| (name, lookup(&catalog.tasks, name)))
                    .collect();
            let mut names = rules::names_to_resolve(&refs);
            for resolution in task_resolutions.values() {
                if let Resolution::Found(task) = resolution {
                    names.extend(task.functions());
                }
            }
            let resolutions: HashMap<&str, Resolution<Function>> = names
                .into_iter()
                .map(|name| (name, lookup(&catalog.functions, name)))
                .collect();
            let functions = |name: &str| resolutions.get(name);
            let mut verdict = rules::judge(&refs, &[], functions, policy);
            let tasks_lookup = |name: &str| task_resolutions.get(name);
            let tasks_lookup: task_rules::TaskLookup =
                (tasks == Tasks::Known).then_some(&tasks_lookup as _);
            verdict.extend(task_rules::judge(
                kind,
                &uses,
                &[],
                tasks_lookup,
                functions,
                policy,
            ));
            let namespace = doc.meta("namespace");
            report.objects.push(Judged {
                file: file.clone(),
                kind: kind.as_str(),
                // As written: a namespaced object without one goes where kubectl's context says.
                namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                name: doc.meta("name").to_owned(),
                denials: verdict.denials.iter().map(ToString::to_string).collect(),
                warnings: verdict.warnings,
            });
        }
    }
    report
}

/// Judges one KubeStash object as a CREATE. A referent kind the catalog holds none of (and that
/// was not listed from a cluster) is not checked.
fn judge_kubestash(
    file: &str,
    doc: &Document,
    kind: &'static kubestash::Kind,
    catalog: &Catalog,
    policy: &Policy,
) -> Judged {
    fn found<T>(
        items: &HashMap<String, Arc<T>>,
        names: Vec<String>,
        complete: bool,
    ) -> Option<HashMap<String, Resolution<T>>> {
        (complete || !items.is_empty()).then(|| {
            names
                .into_iter()
                .map(|name| {
                    let resolution = match items.get(&name) {
                        Some(item) => Resolution::Found(item.clone()),
                        None => Resolution::NotFound,
                    };
                    (name, resolution)
                })
                .collect()
        })
    }
    let written = doc.meta("namespace");
    // As kubectl would: an object without a namespace goes to the context's, here "default".
    let namespace = if written.is_empty() {
        "default"
    } else {
        written
    };
    let refs = kubestash::references(kind, &doc.object, namespace);
    let complete = catalog.complete;
    let objects = [(kind, &refs[..])];
    let wanted = ks_rules::to_resolve(&objects, &ks_rules::Catalog::default());
    let mut known = ks_rules::Catalog {
        addons: found(&catalog.addons, wanted.addons, complete),
        hook_templates: found(&catalog.hook_templates, wanted.hook_templates, complete),
        functions: None,
    };
    let functions = ks_rules::to_resolve(&objects, &known).functions;
    known.functions = found(&catalog.addon_functions, functions, complete);
    let verdict = ks_rules::judge(kind, namespace, &refs, &[], &known, policy);
    Judged {
        file: file.to_owned(),
        kind: kind.label,
        namespace: (!written.is_empty()).then(|| written.to_owned()),
        name: doc.meta("name").to_owned(),
        denials: verdict.denials.iter().map(ToString::to_string).collect(),
        warnings: verdict.warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str) -> Vec<(String, Vec<Document>)> {
        vec![("in.yaml".to_owned(), documents::read(text).unwrap())]
    }

    #[test]
    fn functions_in_the_same_input_count_as_existing() {
        let files = docs(
            "apiVersion: stash.appscode.com/v1beta1\nkind: Function\nmetadata: {name: f}\nspec: {image: busybox}\n---\n\
             apiVersion: stash.appscode.com/v1beta1\nkind: BackupConfiguration\nmetadata: {name: ok, namespace: demo}\n\
             spec: {hooks: {preBackup: {executor: {functionName: f}}}}\n---\n\
             apiVersion: stash.appscode.com/v1beta1\nkind: BackupConfiguration\nmetadata: {name: bad}\n\
             spec: {hooks: {preBackup: {executor: {functionName: ghost}}}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        );
        let report = judge(
            &files,
            &catalog_in(&files),
            Tasks::Known,
            &Policy::default(),
        );
        assert_eq!(report.objects.len(), 2);
        assert_eq!(report.skipped, 2, "the Function and the ConfigMap");
        assert_eq!(report.exit_code(), 1);
        assert_eq!(
            report.text(),
            "in.yaml: BackupConfiguration bad: spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)\n\
             2 objects judged, 1 denied, 0 warned, 2 skipped\n"
        );
    }

    #[test]
    fn kubestash_objects_are_judged_against_the_addons_in_the_inputs() {
        let files = docs(
            "apiVersion: addons.kubestash.com/v1alpha1\nkind: Addon\nmetadata: {name: a}\n\
             spec: {backupTasks: [{name: backup, function: f}]}\n---\n\
             apiVersion: addons.kubestash.com/v1alpha1\nkind: Function\nmetadata: {name: f}\nspec: {image: busybox}\n---\n\
             apiVersion: core.kubestash.com/v1alpha1\nkind: BackupConfiguration\nmetadata: {name: ok, namespace: demo}\n\
             spec: {sessions: [{addon: {name: a, tasks: [{name: backup}]}}]}\n---\n\
             apiVersion: core.kubestash.com/v1alpha1\nkind: BackupConfiguration\nmetadata: {name: bad, namespace: demo}\n\
             spec: {sessions: [{addon: {name: a, tasks: [{name: backups}]}}]}\n",
        );
        let report = judge(
            &files,
            &catalog_in(&files),
            Tasks::NotGiven,
            &Policy::default(),
        );
        assert_eq!((report.objects.len(), report.skipped), (2, 2));
        assert_eq!(
            report.text(),
            "in.yaml: BackupConfiguration.core.kubestash.com demo/bad: spec.sessions[0].addon.tasks[0].name: Addon \"a\" has no backup task \"backups\": name one of Addon \"a\"'s backup tasks (it has backup)\n\
             2 objects judged, 1 denied, 0 warned, 2 skipped\n"
        );
    }
}
