//! Which `${...}` variables a Stash `Function` reads, read the way Stash reads them.
//!
//! Stash turns the whole object into JSON (`json.Marshal`, keys and `metadata` included)
//! and runs `envsubst.EvalMap` (gomodules.xyz/envsubst, a fork of drone/envsubst) over
//! that text; a reference to an input it was not given fails the Job with
//! `ValueNotFoundError`, and text envsubst cannot parse fails it with `bad substitution`.
//! The webhook wants both failures at admission, so this module reads the same grammar.
//!
//! [`of_json`] walks every string of the object, object keys too, and feeds each one
//! to [`add_variables`]. The decoded strings are enough: Go's JSON
//! encoder never escapes a character the grammar cares about, and the backslashes it
//! doubles cancel out the scanner's `\\` escape, so a backslash never escapes anything
//! here. The exception is a malformed `${` whose operator argument runs into the next
//! JSON string (`["${A:-x", "}"]` is valid as one JSON text); we report it as malformed.
//!
//! Grammar (drone/envsubst `parse/parse.go`, `parse/scan.go`; gomodules `template.go`):
//! * Only `${...}` is a reference; `$NAME` is plain text. Outside references, and in
//!   the `/pattern/replacement` arguments, `$$` is a literal `$` (so `$${A}` reads nothing).
//! * A name is one or more letters, digits, `_` or `-` (digits may come first).
//! * `${A}`, `${#A}`, `${A^}` `${A^^}` `${A,}` `${A,,}`, `${A:1}` `${A:1:2}`, `${A#p}`
//!   `${A##p}` `${A%p}` `${A%%p}`, `${A/p/r}` `${A//p/r}` `${A/#p/r}` `${A/%p/r}`, and
//!   `${A:?x}` `${A:+x}` all fail when `A` is unset. Only `=`, `:=` and `:-` supply a
//!   default, and an empty default (`${A:=}`) still counts: Stash's own test resolves
//!   `--p3=${p3:=}` without `p3`. `${A-x}` is the single name `A-x`; `${A+x}`,
//!   `${A?x}`, `${}` and `${ A }` are malformed.
//! * Arguments may hold references, which are always evaluated, so `B` in `${A:-${B}}`
//!   is required even when `A` is given. A default may mix text and references
//!   (`${A:-x${B}y}`); the other operators take exactly one text run or one reference.
//!
//! Versions: Stash used gomodules.xyz/envsubst v0.1.0 until late 2023 and v0.2.0 since
//! (stashed/stash `go.mod`). This module follows the newer grammar that v0.2.0's files in
//! Stash's `vendor/` match (defaults joined from several parts). v0.1.0's parser (also
//! vendored there) took one term per default and no `-` in names: under it
//! `${A:-x${B}}` and `${A-x}` are `bad substitution`.
//!
//! Known gaps: Go's `unicode.IsLetter`/`IsDigit` are approximated by Rust's
//! Alphabetic/Numeric properties, which also accept a few number-like and mark
//! characters (`²`, `Ⅻ`); references nested deeper than [`MAX_DEPTH`] count as malformed.

/// One variable a text reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// True when Stash cannot fail on this name being unset: every reference to it
    /// uses `=`, `:=` or `:-`.
    pub has_default: bool,
}

/// Nesting deeper than this is reported as malformed instead of recursing further,
/// so no input can exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// The variables `text` reads, each name once, in order of first appearance.
pub fn variables_in(text: &str) -> Vec<Variable> {
    let mut found = Vec::new();
    add_variables(text, &mut found);
    found
}

/// Adds the variables of `text` to `into`, for walking all strings of one object.
/// A name already present keeps `has_default` only if this text also defaults it.
pub fn add_variables(text: &str, into: &mut Vec<Variable>) {
    for var in Reader::read(text).0 {
        match into.iter_mut().find(|old| old.name == var.name) {
            Some(old) => old.has_default &= var.has_default,
            None => into.push(var),
        }
    }
}

/// Byte offset of the first `${` that envsubst cannot parse. Stash then fails the
/// whole object with `bad substitution`, whatever inputs it has.
pub fn malformed_at(text: &str) -> Option<usize> {
    Reader::read(text).1
}

#[derive(Default)]
struct Reader {
    chars: Vec<(usize, char)>,
    pos: usize,
    found: Vec<Variable>,
}

impl Reader {
    fn read(text: &str) -> (Vec<Variable>, Option<usize>) {
        let mut r = Reader {
            chars: text.char_indices().collect(),
            ..Default::default()
        };
        let mut malformed = None;
        while r.peek(0).is_some() {
            if r.at_reference() {
                let start = r.chars.get(r.pos).map_or(0, |&(byte, _)| byte);
                let mark = r.found.len();
                r.pos += 2;
                if r.reference(0).is_none() {
                    // envsubst gives up on the whole text; we keep reading after the
                    // point of failure (never before it, so this stays linear).
                    r.found.truncate(mark);
                    malformed.get_or_insert(start);
                }
            } else {
                // plain text, where `$$` is a literal `$` (it cannot fail: no `${` here)
                let _ = r.param(0, |_| true, true);
            }
        }
        (r.found, malformed)
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).map(|&(_, c)| c)
    }

    fn at_reference(&self) -> bool {
        self.peek(0) == Some('$') && self.peek(1) == Some('{')
    }

    fn eat(&mut self, want: char) -> bool {
        let hit = self.peek(0) == Some(want);
        self.pos += usize::from(hit);
        hit
    }

    fn close(&mut self) -> Option<()> {
        self.eat('}').then_some(())
    }

    fn name(&mut self) -> Option<String> {
        let mut name = String::new();
        while let Some(c) = self
            .peek(0)
            .filter(|&c| c == '_' || c == '-' || c.is_alphanumeric())
        {
            name.push(c);
            self.pos += 1;
        }
        (!name.is_empty()).then_some(name)
    }

    /// The rest of a reference whose `${` was just consumed.
    fn reference(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let length = self.eat('#');
        let name = self.name()?;
        let op = (self.peek(0), self.peek(1));
        let has_default = !length && matches!(op, (Some('='), _) | (Some(':'), Some('=' | '-')));
        self.found.push(Variable { name, has_default });
        if length {
            return self.close();
        }
        match op {
            (Some('}'), _) => self.close(),
            (Some('='), _) | (Some(':'), Some('=' | '-' | '?' | '+')) => {
                self.pos += 2 - usize::from(op.0 == Some('='));
                self.defaults(depth)
            }
            (Some(':'), _) => {
                self.pos += 1;
                self.param(depth, |c| c != ':' && c != '}', false)?;
                if self.eat('}') {
                    return Some(());
                }
                self.eat(':').then_some(())?;
                while self.eat(':') {}
                self.param(depth, |c| c != '}', false)?;
                self.close()
            }
            (Some(',' | '^'), second) => {
                self.pos += 1 + usize::from(matches!(second, Some(',' | '^')));
                self.close()
            }
            (Some(op @ ('#' | '%')), second) => {
                self.pos += 1 + usize::from(second == Some(op));
                self.param(depth, |c| c != '}', false)?;
                self.close()
            }
            (Some('/'), second) => {
                self.pos += 1 + usize::from(matches!(second, Some('/' | '#' | '%')));
                self.param(depth, |c| c != '/', true)?;
                self.eat('/').then_some(())?;
                while self.eat('/') {}
                if self.eat('}') {
                    return Some(());
                }
                self.param(depth, |c| c != '}', true)?;
                self.close()
            }
            _ => None,
        }
    }

    /// Default text: any mix of text runs and references, up to the closing `}`.
    fn defaults(&mut self, depth: usize) -> Option<()> {
        loop {
            if self.eat('}') {
                return Some(());
            }
            self.param(depth, |c| c != '}', false)?;
        }
    }

    /// One operator argument: a nested reference, or a non-empty run of characters
    /// that `accept` allows, ending before any `${`; with `escapes`, `$$` is one literal `$`.
    fn param(&mut self, depth: usize, accept: fn(char) -> bool, escapes: bool) -> Option<()> {
        if self.at_reference() {
            self.pos += 2;
            return self.reference(depth + 1);
        }
        let start = self.pos;
        while let Some(c) = self.peek(0) {
            if self.at_reference() {
                break;
            } else if escapes && c == '$' && self.peek(1) == Some('$') {
                self.pos += 2;
            } else if accept(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        (self.pos > start).then_some(())
    }
}

/// Names Stash puts into a Function's inputs (stashed/stash `pkg/resolver/inputs.go`
/// `setVariables`, plus `ADDON_IMAGE` from `pkg/resolver/task.go`), spelled as in
/// stashed/apimachinery `apis/constants.go`. Several are set only in some cases, so a
/// Function should still default them: `REPOSITORY_SECRET_*` (a storage secret is
/// named), `REPOSITORY_ENDPOINT`/`_REGION` (the backend has one), `TARGET_KIND`/`_NAME`/
/// `_NAMESPACE` (non-empty in the target ref), `DRIVER_ARGS` (target args given),
/// `RETENTION_*` (that policy field set), backup-only and restore-only names.
#[rustfmt::skip]
pub const STASH_VARIABLES: &[&str] = &[
    "NAMESPACE", "BACKUP_SESSION", "RESTORE_SESSION",
    "REPOSITORY_NAME", "REPOSITORY_NAMESPACE", "REPOSITORY_PROVIDER",
    "REPOSITORY_SECRET_NAME", "REPOSITORY_SECRET_NAMESPACE", "REPOSITORY_BUCKET",
    "REPOSITORY_PREFIX", "REPOSITORY_ENDPOINT", "REPOSITORY_REGION", "MAX_CONNECTIONS",
    "HOSTNAME", "SOURCE_HOSTNAME", "INTERIM_DATA_DIR", "ENABLE_CACHE",
    "TARGET_NAME", "TARGET_KIND", "TARGET_NAMESPACE", "TARGET_MOUNT_PATH", "TARGET_PATHS",
    "TARGET_APP_REPLICAS", "DRIVER_ARGS", "EXCLUDE_PATTERNS", "INCLUDE_PATTERNS",
    "RESTORE_PATHS", "RESTORE_SNAPSHOTS",
    "RETENTION_KEEP_LAST", "RETENTION_KEEP_HOURLY", "RETENTION_KEEP_DAILY",
    "RETENTION_KEEP_WEEKLY", "RETENTION_KEEP_MONTHLY", "RETENTION_KEEP_YEARLY",
    "RETENTION_KEEP_TAGS", "RETENTION_PRUNE", "RETENTION_DRY_RUN",
    "INVOKER_KIND", "INVOKER_NAME", "ADDON_IMAGE",
    "STASH_DOCKER_REGISTRY", "STASH_DOCKER_IMAGE", "STASH_IMAGE_TAG", "LICENSE_APISERVICE",
    "PROMETHEUS_PUSHGATEWAY_URL", "PROMETHEUS_JOB_NAME",
];

/// Names Stash defines but never gives a Function, so a Function reading one without
/// a default fails: BackupBlueprint-only (`TARGET_API_VERSION`, `TARGET_RESOURCE`,
/// `TARGET_APP_VERSION`/`_TYPE`/`_GROUP`/`_RESOURCE`), hook-executor-only (`HOOK_TYPE`),
/// volumeClaimTemplate-only (`POD_ORDINAL`), container env only (`POD_NAME`,
/// `NODE_NAME`, `NICE_ADJUSTMENT`, `IONICE_CLASS`, `IONICE_CLASS_DATA`), and 2019-era
/// constants no longer defined (`REPOSITORY_URL`, `ENABLE_STATUS_SUBRESOURCE`).
#[rustfmt::skip]
pub const NOT_FUNCTION_INPUTS: &[&str] = &[
    "TARGET_API_VERSION", "TARGET_RESOURCE", "TARGET_APP_VERSION", "TARGET_APP_TYPE",
    "TARGET_APP_GROUP", "TARGET_APP_RESOURCE", "HOOK_TYPE", "POD_ORDINAL", "POD_NAME",
    "NODE_NAME", "NICE_ADJUSTMENT", "IONICE_CLASS", "IONICE_CLASS_DATA", "REPOSITORY_URL",
    "ENABLE_STATUS_SUBRESOURCE",
];

/// Whether Stash itself may supply `name` (exact, case-sensitive: the inputs are a Go map;
/// Stash has no open-ended name families). The names of [`NOT_FUNCTION_INPUTS`] count too:
/// Stash sets them for a hook's container or in other versions, and a denial that is wrong
/// blocks a valid object, where an allow that is wrong only leaves the failure to run time.
pub fn provided_by_stash(name: &str) -> bool {
    STASH_VARIABLES.contains(&name) || NOT_FUNCTION_INPUTS.contains(&name)
}

/// Whether Stash sets `name` for the steps of a Task it runs (a backup or restore Job), where
/// each step's Function is resolved with the step's `params`, then the object's `task.params`,
/// then these, each over the one before (stashed/apimachinery `pkg/resolve` `TaskResolver.GetPodSpec`;
/// the Task itself is resolved first with the last two). Stash's controller builds them in
/// `pkg/controller/inputs.go` (`inputsForBackupInvoker`, `inputsForRestoreInvoker`: target,
/// retention, host, invoker, cache, interim directory, metrics; `inputsForRepository`) and in
/// `resolveBackupTask`/`resolveRestoreTask` (`NAMESPACE`, `BACKUP_SESSION`/`RESTORE_SESSION`,
/// `STASH_DOCKER_*`, `STASH_IMAGE_TAG`, `LICENSE_APISERVICE`); releases of 2019-2020 also set
/// `ENABLE_STATUS_SUBRESOURCE` there, and the newer resolver the namespaced repository and
/// target names and `ADDON_IMAGE`, all in [`STASH_VARIABLES`]. Unlike a hook's executor, a step
/// never gets a hook's or a pod's own names (`HOOK_TYPE`, `POD_NAME`, ...) nor a blueprint's
/// (`TARGET_APP_VERSION`, ...): a step Function that reads one of them without a default fails.
pub fn provided_for_task(name: &str) -> bool {
    STASH_VARIABLES.contains(&name) || name == "ENABLE_STATUS_SUBRESOURCE"
}

/// `text` with each `${...}` replaced by `placeholder`: what is left to judge of a value whose
/// references Stash fills in later (an image such as `postgres:${PG_VERSION:=16}`). An unclosed
/// `${` is left as it is.
pub fn with_placeholders(text: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in rest[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(start + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str(placeholder);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Every variable a Function given as JSON reads: Stash substitutes the JSON text of the whole
/// object, so every string and every key counts.
pub fn of_json(value: &serde_json::Value) -> Vec<Variable> {
    fn walk(value: &serde_json::Value, found: &mut Vec<Variable>) {
        match value {
            serde_json::Value::String(text) => add_variables(text, found),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    add_variables(key, found);
                    walk(v, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, &mut found);
    found
}

/// The first text of an object (a string or a key, in document order) holding a `${` that
/// envsubst cannot parse, from that `${` on. Stash substitutes the object's JSON as one text, and
/// one such reference fails all of it.
pub fn malformed_in_json(value: &serde_json::Value) -> Option<String> {
    let at = |text: &str| malformed_at(text).map(|at| text[at..].to_owned());
    match value {
        serde_json::Value::String(text) => at(text),
        serde_json::Value::Array(items) => items.iter().find_map(malformed_in_json),
        serde_json::Value::Object(map) => map
            .iter()
            .find_map(|(key, v)| at(key).or_else(|| malformed_in_json(v))),
        _ => None,
    }
}

/// Levenshtein distance over chars, one row at a time.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let (mut diagonal, mut left) = (i, i + 1);
        for (cell, &cb) in row.iter_mut().skip(1).zip(&b) {
            let up = *cell;
            *cell = if ca == cb {
                diagonal
            } else {
                1 + diagonal.min(up).min(left)
            };
            (diagonal, left) = (up, *cell);
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().map_or(0, |&v| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, bool)]) -> Vec<Variable> {
        list.iter()
            .map(|&(n, d)| Variable {
                name: n.to_string(),
                has_default: d,
            })
            .collect()
    }

    /// (text, variables read, first malformed byte offset)
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &[(&str, bool)], Option<usize>)] = &[
        // plain and every operator
        ("${NAME}", &[("NAME", false)], None),
        ("${NAME:=default}", &[("NAME", true)], None),
        ("${NAME:=}", &[("NAME", true)], None),
        ("${NAME=default}", &[("NAME", true)], None),
        ("${NAME=}", &[("NAME", true)], None),
        ("${NAME:-default}", &[("NAME", true)], None),
        ("${NAME:-}", &[("NAME", true)], None),
        ("${NAME:+x}", &[("NAME", false)], None),
        ("${NAME:?msg}", &[("NAME", false)], None),
        ("${#NAME}", &[("NAME", false)], None),
        (
            "${NAME^}${NAME^^}${NAME,}${NAME,,}${NAME^,}",
            &[("NAME", false)],
            None,
        ),
        ("${NAME:1}", &[("NAME", false)], None),
        ("${NAME:1:2}", &[("NAME", false)], None),
        ("${NAME:1::2}", &[("NAME", false)], None),
        ("${NAME/a/b}", &[("NAME", false)], None),
        ("${NAME//a/b}", &[("NAME", false)], None),
        ("${NAME/#a/b}", &[("NAME", false)], None),
        ("${NAME/%a/b}", &[("NAME", false)], None),
        ("${NAME/a/}", &[("NAME", false)], None),
        ("${NAME/a}b/c}", &[("NAME", false)], None),
        (
            "${NAME#x}${NAME##x}${NAME%x}${NAME%%x}",
            &[("NAME", false)],
            None,
        ),
        ("${NAME###}", &[("NAME", false)], None),
        ("${NAME-default}", &[("NAME-default", false)], None),
        ("${1abc}", &[("1abc", false)], None),
        ("${A:==x}", &[("A", true)], None),
        // escapes and things that only look like references
        ("$${NAME}", &[], None),
        ("$$${NAME}", &[("NAME", false)], None),
        ("$$$${NAME}", &[], None),
        ("\\${NAME}", &[("NAME", false)], None),
        ("$NAME $HOME", &[], None),
        ("{NAME} $ {NAME} $(NAME) %{NAME}", &[], None),
        ("$", &[], None),
        ("costs 5$", &[], None),
        ("$$", &[], None),
        ("", &[], None),
        ("}}{{", &[], None),
        // nested references
        ("${A:=${B}}", &[("A", true), ("B", false)], None),
        ("${A:=${B:-x}}", &[("A", true), ("B", true)], None),
        ("${A:-x${B}y}", &[("A", true), ("B", false)], None),
        ("${A:-$${B}}", &[("A", true), ("B", false)], None),
        ("${A/$${B}/x}", &[("A", false)], None),
        (
            "${A/${B}/${C:-c}}",
            &[("A", false), ("B", false), ("C", true)],
            None,
        ),
        (
            "${A:${B}:${C}}",
            &[("A", false), ("B", false), ("C", false)],
            None,
        ),
        ("${A#${B}}", &[("A", false), ("B", false)], None),
        // Unicode around and in references
        ("日本${名前}語", &[("名前", false)], None),
        ("${café:-thé}", &[("café", true)], None),
        ("→${A}←", &[("A", false)], None),
        ("${A€}", &[], Some(0)),
        ("é${", &[], Some(2)),
        // malformed
        ("${", &[], Some(0)),
        ("${}", &[], Some(0)),
        ("x ${ NAME }", &[], Some(2)),
        ("${A", &[], Some(0)),
        ("${A:-x", &[], Some(0)),
        ("${A:-${B}", &[], Some(0)),
        ("${NAME+x}", &[], Some(0)),
        ("${NAME?x}", &[], Some(0)),
        ("${NAME.x}", &[], Some(0)),
        ("${A/x}", &[], Some(0)),
        ("${A//x}", &[], Some(0)),
        ("${A///x}", &[], Some(0)),
        // reading resumes where the malformed reference failed, here at `${B}`
        ("${A/x${B}/y}", &[("B", false)], Some(0)),
        ("${A:}", &[], Some(0)),
        ("${A::2}", &[], Some(0)),
        ("${A:1:}", &[], Some(0)),
        ("${A#}", &[], Some(0)),
        ("${#}", &[], Some(0)),
        ("${##A}", &[], Some(0)),
        ("${#A:-x}", &[], Some(0)),
        ("${A^^^}", &[], Some(0)),
        ("${A:=x}${", &[("A", true)], Some(7)),
        ("${ ${A}", &[("A", false)], Some(0)),
        ("${B} ${ x} ${C:-y}", &[("B", false), ("C", true)], Some(5)),
        // repeated names: one entry, required if any use is required
        ("${A} ${A:-x}", &[("A", false)], None),
        ("${A:-x} ${A:=y}", &[("A", true)], None),
        ("${B} ${A} ${B}", &[("B", false), ("A", false)], None),
    ];

    #[test]
    fn reads_references_like_envsubst() {
        for &(text, want, malformed) in CASES {
            assert_eq!(variables_in(text), vars(want), "variables of {text:?}");
            assert_eq!(malformed_at(text), malformed, "malformed_at of {text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_malformed_not_a_crash() {
        let text = format!("{}x{}", "${A:-".repeat(1000), "}".repeat(1000));
        assert_eq!(malformed_at(&text), Some(0));
        // 1000 levels fail 15 times at 65 levels each; the last 25 parse.
        assert_eq!(variables_in(&text), vars(&[("A", true)]));
    }

    #[test]
    fn add_variables_merges_across_strings() {
        let mut all = Vec::new();
        for s in [
            "--out=${outputDir:=/tmp}",
            "${level}",
            "${outputDir}",
            "plain",
        ] {
            add_variables(s, &mut all);
        }
        assert_eq!(all, vars(&[("outputDir", false), ("level", false)]));
    }

    #[test]
    fn stash_tables() {
        for (name, want) in [
            ("NAMESPACE", true),
            ("RETENTION_KEEP_LAST", true),
            ("ADDON_IMAGE", true),
            ("DRIVER_ARGS", true),
            ("HOOK_TYPE", true),
            ("TARGET_APP_VERSION", true),
            ("namespace", false),
            ("", false),
        ] {
            assert_eq!(provided_by_stash(name), want, "{name}");
        }
        for name in NOT_FUNCTION_INPUTS {
            assert!(provided_by_stash(name), "{name}");
        }
        let mut sorted = STASH_VARIABLES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), STASH_VARIABLES.len());
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn references_are_replaced_by_placeholders() {
        for (text, want) in [
            ("postgres:${PG_VERSION:=16}", "postgres:x"),
            ("${REGISTRY}/pg:${TAG}", "x/pg:x"),
            ("${A:-${B}}-c", "x-c"),
            ("plain", "plain"),
            ("a:${unclosed", "a:${unclosed"),
            ("é${A}é", "éxé"),
        ] {
            assert_eq!(with_placeholders(text, "x"), want, "{text}");
        }
    }

    #[test]
    fn a_function_reads_the_variables_of_every_string_and_key() {
        let function = serde_json::json!({
            "metadata": {"name": "pg-dump", "annotations": {"${KEYED}": "x"}},
            "spec": {"image": "postgres:${PG_VERSION:=16}", "args": ["--out=${outputDir}", "--level=${level}", "${outputDir}"]}
        });
        assert_eq!(
            of_json(&function),
            vec![
                // In the order serde_json keeps keys: sorted.
                Variable {
                    name: "KEYED".into(),
                    has_default: false
                },
                Variable {
                    name: "outputDir".into(),
                    has_default: false
                },
                Variable {
                    name: "level".into(),
                    has_default: false
                },
                Variable {
                    name: "PG_VERSION".into(),
                    has_default: true
                },
            ]
        );
    }
}
