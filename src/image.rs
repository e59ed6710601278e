//! Container image reference validation, following the grammar the kubelet's runtime uses
//! (`distribution/reference`): `[host[:port]/]path[:tag][@algorithm:hex]`.
//!
//! A Function whose image would fail to pull only fails when the hook runs, during a backup, which
//! is the late failure this webhook exists to prevent; so the reason is spelled out precisely.

use thiserror::Error;

const NAME_TOTAL_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why an image reference is not valid. The text completes "image "X" is not valid: ...".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    #[error("it is empty")]
    Empty,
    #[error("it contains whitespace")]
    Whitespace,
    #[error("it must not include a URL scheme (drop \"{0}://\")")]
    Scheme(String),
    #[error("registry host \"{0}\" is not a valid host[:port]")]
    Host(String),
    #[error("repository \"{0}\" must be lowercase")]
    Uppercase(String),
    #[error("repository path component \"{0}\" is invalid: use lowercase letters and digits, separated by '.', '_', '__' or '-'")]
    PathComponent(String),
    #[error("the repository name is longer than {NAME_TOTAL_MAX} characters")]
    TooLong,
    #[error("tag \"{0}\" is invalid: use at most 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")]
    Tag(String),
    #[error(
        "digest \"{0}\" is invalid: expected algorithm:hex, such as sha256: and 64 hex digits"
    )]
    Digest(String),
}

/// Checks that `reference` is a pullable image reference.
pub fn validate(reference: &str) -> Result<(), ImageError> {
    if reference.is_empty() {
        return Err(ImageError::Empty);
    }
    if reference.chars().any(char::is_whitespace) {
        return Err(ImageError::Whitespace);
    }
    if let Some((scheme, _)) = reference.split_once("://") {
        return Err(ImageError::Scheme(scheme.to_owned()));
    }

    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        if !valid_digest(digest) {
            return Err(ImageError::Digest(digest.to_owned()));
        }
    }

    // The tag follows the last ':' unless that ':' belongs to a host port (then a '/' follows it).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        if !valid_tag(tag) {
            return Err(ImageError::Tag(tag.to_owned()));
        }
    }

    if name.len() > NAME_TOTAL_MAX {
        return Err(ImageError::TooLong);
    }
    let (host, path) = split_host(name);
    if let Some(host) = host {
        if !valid_host(host) {
            return Err(ImageError::Host(host.to_owned()));
        }
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ImageError::Uppercase(path.to_owned()));
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(ImageError::PathComponent(component.to_owned()));
        }
    }
    Ok(())
}

/// Splits off the registry host the way the container runtimes do: the first component is a host
/// only when it looks like one (has '.', or ':', or is `localhost`, or has an uppercase letter).
fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(stripped) = host.strip_prefix('[') {
        // [IPv6]:port
        match stripped.split_once(']') {
            Some((v6, rest)) => {
                if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                match rest {
                    "" => return true,
                    _ => match rest.strip_prefix(':') {
                        Some(port) => return valid_port(port),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        if !valid_port(port) {
            return false;
        }
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.chars().all(|c| c.is_ascii_digit())
}

/// `[a-z0-9]+` runs joined by one of `.`, `_`, `__`, or one or more `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_lower_alnum(bytes[0]) || !is_lower_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_lower_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_lower_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    let hex_ok = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    let sha256_ok = algorithm != "sha256"
        || (hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    algorithm_ok && hex_ok && sha256_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_world_references() {
        for ok in [
            "busybox",
            "appscode/mysql-hook:8.0.14",
            "docker.io/library/mysql:8.0",
            "ghcr.io/stashed/stash_hook.exec__v2:v1.0.0-rc.1",
            "localhost/hook",
            "localhost:5000/team/hook:latest",
            "registry.example.com:443/a/b/c",
            "[::1]:5000/hook:1",
            "quay.io/org/hook@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "quay.io/org/hook:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my--repo/a-b",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn explains_what_is_wrong() {
        let digest_ok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases: Vec<(String, ImageError)> = vec![
            ("".into(), ImageError::Empty),
            ("mysql hook:1".into(), ImageError::Whitespace),
            (
                "https://quay.io/a".into(),
                ImageError::Scheme("https".into()),
            ),
            ("Appscode/Hook".into(), ImageError::Uppercase("Hook".into())),
            (
                "appscode/Hook".into(),
                ImageError::Uppercase("appscode/Hook".into()),
            ),
            (
                "appscode/-hook".into(),
                ImageError::PathComponent("-hook".into()),
            ),
            (
                "appscode//hook".into(),
                ImageError::PathComponent("".into()),
            ),
            ("a/b.-c".into(), ImageError::PathComponent("b.-c".into())),
            ("hook:".into(), ImageError::Tag("".into())),
            ("hook:.bad".into(), ImageError::Tag(".bad".into())),
            (
                format!("hook:{}", "a".repeat(129)),
                ImageError::Tag("a".repeat(129)),
            ),
            (
                "hook@sha256:abc".into(),
                ImageError::Digest("sha256:abc".into()),
            ),
            ("hook@md5".into(), ImageError::Digest("md5".into())),
            (
                format!("hook@sha256:{}", digest_ok.to_uppercase()),
                ImageError::Digest(format!("sha256:{}", digest_ok.to_uppercase())),
            ),
            (
                "bad_host.io:99999999/a".into(),
                ImageError::Host("bad_host.io:99999999".into()),
            ),
            (format!("a/{}", "b".repeat(255)), ImageError::TooLong),
        ];
        for (input, want) in cases {
            assert_eq!(validate(&input), Err(want), "{input}");
        }
    }

    #[test]
    fn messages_name_the_offending_part() {
        assert_eq!(
            validate("appscode/mysql-hook:8.0.14!").map_err(|e| e.to_string()),
            Err("tag \"8.0.14!\" is invalid: use at most 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'".to_owned())
        );
    }
}
