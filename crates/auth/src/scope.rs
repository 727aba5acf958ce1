//! Scopes of the Docker token protocol: what a client asks the token endpoint for.
//!
//! A scope is `type[(class)]:name:action[,action…]`, for instance
//! `repository:team/app:pull,push`, `repository(plugin):vendor/p:pull` or
//! `registry:catalog:*`. The name may contain `host:port` (Notary asks for GUNs such as
//! `127.0.0.1:5000/app`), so a scope is split on its FIRST and its LAST `:` and everything
//! in between is the name. Several scopes arrive in one request, either space-separated in
//! one `scope` parameter or as repeated parameters: [`parse_scopes`] takes the list of
//! parameter values.
//!
//! Parsing only says what was asked; what is granted is decided by [`crate::rbac`].
//! Unknown resource types and actions are kept (as `Other`) rather than refused, because a
//! newer client may ask for more than Berth knows: they are simply never granted.

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest scope string accepted, so that a hostile request cannot make us allocate much.
pub const MAX_SCOPE_LEN: usize = 1024;
/// Most scopes accepted in one token request.
pub const MAX_SCOPES: usize = 64;

/// Why a scope string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not of the form `type:name:actions`.
    #[error("malformed scope {0:?}: expected type:name:actions")]
    Malformed(String),
    /// The resource type (or its class) is not lowercase letters and digits.
    #[error("invalid resource type {0:?}")]
    ResourceType(String),
    /// The resource name is not a valid repository name (optionally host-qualified).
    #[error("invalid resource name {0:?}")]
    Name(String),
    /// An action is not lowercase letters (or `*`).
    #[error("invalid action {0:?}")]
    Action(String),
    /// The scope string is longer than [`MAX_SCOPE_LEN`].
    #[error("scope longer than {MAX_SCOPE_LEN} bytes")]
    TooLong,
    /// More than [`MAX_SCOPES`] scopes in one request.
    #[error("more than {MAX_SCOPES} scopes in one request")]
    TooMany,
}

/// The kind of resource a scope names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `repository`: a repository's manifests and blobs.
    Repository,
    /// `registry`: registry-wide resources; the only one Berth knows is `catalog`.
    Registry,
    /// Any other type a client asked for; never granted.
    Other(String),
}

impl ResourceType {
    /// The wire form (`repository`, `registry`, …).
    pub fn as_str(&self) -> &str {
        match self {
            ResourceType::Repository => "repository",
            ResourceType::Registry => "registry",
            ResourceType::Other(s) => s,
        }
    }
    fn parse(s: &str) -> ResourceType {
        match s {
            "repository" => ResourceType::Repository,
            "registry" => ResourceType::Registry,
            other => ResourceType::Other(other.to_string()),
        }
    }
}

/// One action on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read manifests and blobs.
    Pull,
    /// Write manifests, blobs and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// `*`: every action (used by `registry:catalog:*`).
    All,
    /// An action Berth does not know; never granted.
    Other(String),
}

impl Action {
    /// The wire form (`pull`, `push`, `delete`, `*`, …).
    pub fn as_str(&self) -> &str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::All => "*",
            Action::Other(s) => s,
        }
    }
    /// Parses one action; `[a-z]+` or `*`.
    pub fn parse(s: &str) -> Result<Action, ScopeError> {
        Ok(match s {
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            "*" => Action::All,
            other
                if !other.is_empty()
                    && other.len() <= 32
                    && other.bytes().all(|b| b.is_ascii_lowercase()) =>
            {
                Action::Other(other.to_string())
            }
            other => return Err(ScopeError::Action(truncate(other))),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository name qualified by a registry host, such as `127.0.0.1:5000/app` or
/// `[::1]:5000/team/app` (a Notary GUN). The host part is checked to be a host name or an
/// address with an optional port; the rest is a valid [`RepoName`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopeName(String);

impl ScopeName {
    /// Parses `host[:port]/repository`.
    pub fn parse(s: &str) -> Result<ScopeName, ScopeError> {
        let bad = || ScopeError::Name(truncate(s));
        let (host, path) = s.split_once('/').ok_or_else(bad)?;
        if !host_ok(host) {
            return Err(bad());
        }
        RepoName::parse(path).map_err(|_| bad())?;
        Ok(ScopeName(s.to_string()))
    }
    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The `host[:port]` part.
    pub fn host(&self) -> &str {
        self.0.split_once('/').map_or(&self.0[..], |(h, _)| h)
    }
    /// The repository path after the host.
    pub fn path(&self) -> RepoName {
        let p = self.0.split_once('/').map_or("", |(_, p)| p);
        RepoName::parse(p).expect("validated at construction")
    }
}

berth_oci::text_newtype!(ScopeName);
berth_oci::string_form!(ScopeName, ScopeError, ScopeName::parse, ScopeName::as_str);

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the host must contain a `:` port or a
/// bracketed address to be told apart from a repository component (a name like
/// `example.com/app` is already a valid repository name and is kept as one).
fn host_ok(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (addr, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => (None, p),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((a, p)) => (Some(a), p),
            None => return false,
        }
    };
    if let Some(a) = addr {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !a.split('.').all(label_ok) {
            return false;
        }
    }
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// The name part of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceName {
    /// A repository of this registry, validated.
    Repository(RepoName),
    /// A host-qualified repository name (Notary GUN).
    Qualified(ScopeName),
    /// The name of a non-repository resource (`catalog` for `registry`), printable ASCII.
    Other(String),
}

impl ResourceName {
    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            ResourceName::Repository(r) => r.as_str(),
            ResourceName::Qualified(q) => q.as_str(),
            ResourceName::Other(s) => s,
        }
    }
}

/// One parsed scope: a resource and the actions asked on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The optional class in parentheses (`plugin` in `repository(plugin)`).
    pub class: Option<String>,
    /// The resource name.
    pub name: ResourceName,
    /// The actions asked, deduplicated, in the order given. May be empty.
    pub actions: Vec<Action>,
}

impl Scope {
    /// Parses one scope, splitting on the first and the last `:`.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong);
        }
        let malformed = || ScopeError::Malformed(truncate(s));
        let (ty, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;

        let (ty, class) = match ty.split_once('(') {
            Some((t, c)) => {
                let c = c
                    .strip_suffix(')')
                    .ok_or_else(|| ScopeError::ResourceType(truncate(ty)))?;
                (t, Some(c))
            }
            None => (ty, None),
        };
        let lower_alnum = |x: &str| {
            !x.is_empty()
                && x.len() <= 64
                && x.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !lower_alnum(ty) || !class.is_none_or(lower_alnum) {
            return Err(ScopeError::ResourceType(truncate(ty)));
        }
        let resource_type = ResourceType::parse(ty);

        let name = match resource_type {
            ResourceType::Repository => match RepoName::parse(name) {
                Ok(r) => ResourceName::Repository(r),
                Err(_) => ResourceName::Qualified(ScopeName::parse(name)?),
            },
            _ => {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ScopeError::Name(truncate(name)));
                }
                ResourceName::Other(name.to_string())
            }
        };

        let mut parsed: Vec<Action> = Vec::new();
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            let a = Action::parse(a)?;
            if !parsed.contains(&a) {
                parsed.push(a);
            }
        }
        Ok(Scope {
            resource_type,
            class: class.map(str::to_string),
            name,
            actions: parsed,
        })
    }

    /// Whether this scope is about a repository of this registry (with or without class).
    pub fn repository(&self) -> Option<&RepoName> {
        match (&self.resource_type, &self.name) {
            (ResourceType::Repository, ResourceName::Repository(r)) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource_type.as_str())?;
        if let Some(c) = &self.class {
            write!(f, "({c})")?;
        }
        write!(f, ":{}:", self.name.as_str())?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

/// Parses every scope of a token request. Each element is one `scope` parameter value,
/// which may itself hold several scopes separated by spaces. Empty values are skipped.
pub fn parse_scopes<S: AsRef<str>>(params: &[S]) -> Result<Vec<Scope>, ScopeError> {
    let mut out = Vec::new();
    for p in params {
        for s in p.as_ref().split(' ').filter(|s| !s.is_empty()) {
            if out.len() == MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
            out.push(Scope::parse(s)?);
        }
    }
    Ok(out)
}

/// Merges scopes naming the same resource (type, class and name) into one, with the union
/// of their actions, keeping first-seen order. A token's `access` claim lists each
/// resource once.
pub fn merge_scopes(scopes: Vec<Scope>) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::with_capacity(scopes.len());
    for s in scopes {
        match out
            .iter_mut()
            .find(|o| o.resource_type == s.resource_type && o.class == s.class && o.name == s.name)
        {
            Some(o) => {
                for a in s.actions {
                    if !o.actions.contains(&a) {
                        o.actions.push(a);
                    }
                }
            }
            None => out.push(s),
        }
    }
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(s: &Scope) -> (String, Option<String>, String, Vec<String>) {
        (
            s.resource_type.as_str().to_string(),
            s.class.clone(),
            s.name.as_str().to_string(),
            s.actions.iter().map(|a| a.as_str().to_string()).collect(),
        )
    }

    type Row = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        &'static [&'static str],
        char,
    );
    type BadRow = (&'static str, fn(&ScopeError) -> bool);

    // input, type, class, name, actions, name kind (r = repository, q = qualified, o = other)
    #[rustfmt::skip]
    const OK: &[Row] = &[
        ("repository:app:pull", "repository", None, "app", &["pull"], 'r'),
        ("repository:team/app:pull,push", "repository", None, "team/app", &["pull", "push"], 'r'),
        ("repository:a/b/c:delete", "repository", None, "a/b/c", &["delete"], 'r'),
        ("repository:a:pull,pull,push", "repository", None, "a", &["pull", "push"], 'r'),
        ("repository:a:*", "repository", None, "a", &["*"], 'r'),
        ("repository:a:", "repository", None, "a", &[], 'r'),
        ("repository:a:pull,,push", "repository", None, "a", &["pull", "push"], 'r'),
        ("repository:a:mount", "repository", None, "a", &["mount"], 'r'),
        ("repository(plugin):vendor/p:pull", "repository", Some("plugin"), "vendor/p", &["pull"], 'r'),
        ("registry:catalog:*", "registry", None, "catalog", &["*"], 'o'),
        ("repository:127.0.0.1:5000/app:pull", "repository", None, "127.0.0.1:5000/app", &["pull"], 'q'),
        ("repository:localhost:5000/team/app:pull,push", "repository", None, "localhost:5000/team/app", &["pull", "push"], 'q'),
        ("repository:[::1]:5000/app:pull", "repository", None, "[::1]:5000/app", &["pull"], 'q'),
        ("repository:[::1]/app:pull", "repository", None, "[::1]/app", &["pull"], 'q'),
        ("repository:example.com/app:pull", "repository", None, "example.com/app", &["pull"], 'r'),
        ("widget:thing:frob", "widget", None, "thing", &["frob"], 'o'),
    ];

    #[rustfmt::skip]
    const BAD: &[BadRow] = &[
        ("", |e| matches!(e, ScopeError::Malformed(_))),
        ("repository", |e| matches!(e, ScopeError::Malformed(_))),
        ("repository:app", |e| matches!(e, ScopeError::Malformed(_))),
        (":app:pull", |e| matches!(e, ScopeError::ResourceType(_))),
        ("Repository:app:pull", |e| matches!(e, ScopeError::ResourceType(_))),
        ("repository(plugin:app:pull", |e| matches!(e, ScopeError::ResourceType(_))),
        ("repository():app:pull", |e| matches!(e, ScopeError::ResourceType(_))),
        ("repository:App:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository::pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:../etc:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:a//b:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:host:port/app:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:127.0.0.1:5000:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:127.0.0.1:5000/App:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:-bad-:1/app:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:[zz]:1/app:pull", |e| matches!(e, ScopeError::Name(_))),
        ("repository:app:PULL", |e| matches!(e, ScopeError::Action(_))),
        ("repository:app:pull;push", |e| matches!(e, ScopeError::Action(_))),
        ("registry::*", |e| matches!(e, ScopeError::Name(_))),
    ];

    #[test]
    fn table() {
        for (input, ty, class, name, actions, kind) in OK {
            let s = Scope::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let got = names(&s);
            assert_eq!(got.0, *ty, "{input}");
            assert_eq!(got.1.as_deref(), *class, "{input}");
            assert_eq!(got.2, *name, "{input}");
            let want: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
            assert_eq!(got.3, want, "{input}");
            let k = match s.name {
                ResourceName::Repository(_) => 'r',
                ResourceName::Qualified(_) => 'q',
                ResourceName::Other(_) => 'o',
            };
            assert_eq!(k, *kind, "{input}");
            // Display gives back the canonical form, which parses to the same scope.
            assert_eq!(Scope::parse(&s.to_string()).unwrap(), s, "{input}");
        }
        for (input, want) in BAD {
            let e = Scope::parse(input).expect_err(input);
            assert!(want(&e), "{input}: {e:?}");
        }
        let long = format!("repository:{}:pull", "a".repeat(MAX_SCOPE_LEN));
        assert_eq!(Scope::parse(&long), Err(ScopeError::TooLong));
    }

    #[test]
    fn several_scopes() {
        let one =
            parse_scopes(&["repository:a:pull repository:b:push  registry:catalog:*"]).unwrap();
        let many = parse_scopes(&[
            "repository:a:pull",
            "repository:b:push",
            "",
            "registry:catalog:*",
        ])
        .unwrap();
        assert_eq!(one, many);
        assert_eq!(one.len(), 3);
        assert_eq!(parse_scopes::<&str>(&[]).unwrap(), vec![]);
        assert!(parse_scopes(&["repository:a:pull bad"]).is_err());
        let flood = vec!["repository:a:pull"; MAX_SCOPES + 1];
        assert_eq!(parse_scopes(&flood), Err(ScopeError::TooMany));
    }

    #[test]
    fn merge() {
        let s =
            parse_scopes(&["repository:a:pull repository:b:pull repository:a:push,pull"]).unwrap();
        let m = merge_scopes(s);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].to_string(), "repository:a:pull,push");
        assert_eq!(m[1].to_string(), "repository:b:pull");
    }

    #[test]
    fn scope_name_parts() {
        let n = ScopeName::parse("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(n.host(), "127.0.0.1:5000");
        assert_eq!(n.path().as_str(), "team/app");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<ScopeName>(&json).unwrap(), n);
        assert!(serde_json::from_str::<ScopeName>("\"nohost\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = Scope::parse(&s);
            let _ = parse_scopes(&[s.as_str()]);
        }

        #[test]
        fn parse_never_panics_on_scope_like(s in "[a-z(]{0,12}:[a-z0-9:./\\[\\]_-]{0,40}:[a-z,*]{0,20}") {
            if let Ok(sc) = Scope::parse(&s) {
                prop_assert_eq!(Scope::parse(&sc.to_string()).unwrap(), sc);
            }
        }
    }
}
