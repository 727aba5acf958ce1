//! `/v2` request paths parsed into a closed enum. Each variant says what access it needs,
//! so authorisation (a later layer) can be decided before any handler runs.
//!
//! The raw (still percent-encoded) path is parsed: a repository name never contains `%`,
//! so `a%2fb` is refused rather than decoded into a second path component. Only `%3A` in a
//! digest position is decoded, as some clients escape the `:`.

use axum::http::Method;
use berth_core::trust::{Lookup, RoleName, ServerRole};
use berth_oci::{Digest, DigestError, NameError, Reference, RepoName};

/// A parsed `/v2` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    TagsList {
        repo: RepoName,
    },
    GetManifest {
        repo: RepoName,
        reference: Reference,
    },
    HeadManifest {
        repo: RepoName,
        reference: Reference,
    },
    PutManifest {
        repo: RepoName,
        reference: Reference,
    },
    DeleteManifest {
        repo: RepoName,
        reference: Reference,
    },
    GetBlob {
        repo: RepoName,
        digest: Digest,
    },
    HeadBlob {
        repo: RepoName,
        digest: Digest,
    },
    DeleteBlob {
        repo: RepoName,
        digest: Digest,
    },
    StartUpload {
        repo: RepoName,
    },
    GetUpload {
        repo: RepoName,
        id: String,
    },
    PatchUpload {
        repo: RepoName,
        id: String,
    },
    PutUpload {
        repo: RepoName,
        id: String,
    },
    DeleteUpload {
        repo: RepoName,
        id: String,
    },
    Referrers {
        repo: RepoName,
        digest: Digest,
    },
    /// A Notary route `/v2/<gun>/_trust/...` of one repository: the GUN is
    /// `<host>/<repository>`, and the host must be one of this registry's names (checked by
    /// the handler, which knows them).
    Trust {
        host: String,
        repo: RepoName,
        op: TrustOp,
    },
    /// `GET /v2/_trust/changefeed`: Notary's changefeed of every repository.
    TrustChanges,
}

/// What a Notary route asks of a repository's trust data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustOp {
    /// `GET _trust/tuf/<role>.json`, `<version>.<role>.json` or `<role>.<sha256>.json`.
    Get { role: RoleName, lookup: Lookup },
    /// `POST _trust/tuf/`: a multipart update.
    Update,
    /// `GET _trust/tuf/{snapshot,timestamp}.key`.
    Key(ServerRole),
    /// `POST _trust/tuf/{snapshot,timestamp}.key`: a new key.
    RotateKey(ServerRole),
    /// `DELETE _trust/tuf/`: every file of the repository.
    Delete,
    /// `GET _trust/changefeed`.
    Changes,
}

/// What a request needs to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `GET /v2/`: any caller (authentication only).
    None,
    /// Listing the catalog.
    Catalog,
    Pull,
    Push,
    Delete,
}

/// Why a path is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotFound,
    MethodNotAllowed,
    Name(NameError),
    /// A malformed tag or digest where a manifest reference was expected.
    Reference {
        method: Method,
        error: NameError,
    },
    Digest(DigestError),
}

impl Endpoint {
    /// A short stable name, used as the `route` label of metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::TagsList { .. } => "tags_list",
            Endpoint::GetManifest { .. } => "manifest_get",
            Endpoint::HeadManifest { .. } => "manifest_head",
            Endpoint::PutManifest { .. } => "manifest_put",
            Endpoint::DeleteManifest { .. } => "manifest_delete",
            Endpoint::GetBlob { .. } => "blob_get",
            Endpoint::HeadBlob { .. } => "blob_head",
            Endpoint::DeleteBlob { .. } => "blob_delete",
            Endpoint::StartUpload { .. } => "upload_start",
            Endpoint::GetUpload { .. } => "upload_get",
            Endpoint::PatchUpload { .. } => "upload_patch",
            Endpoint::PutUpload { .. } => "upload_put",
            Endpoint::DeleteUpload { .. } => "upload_delete",
            Endpoint::Referrers { .. } => "referrers",
            Endpoint::Trust { op, .. } => match op {
                TrustOp::Get { .. } => "trust_get",
                TrustOp::Update => "trust_update",
                TrustOp::Key(_) => "trust_key",
                TrustOp::RotateKey(_) => "trust_key_rotate",
                TrustOp::Delete => "trust_delete",
                TrustOp::Changes => "trust_changefeed",
            },
            Endpoint::TrustChanges => "trust_changefeed_all",
        }
    }

    /// The access this endpoint needs, and on which repository.
    pub fn access(&self) -> (Access, Option<&RepoName>) {
        use Endpoint::*;
        match self {
            // Every repository's changes, each kept only for a caller who may pull it
            // (authenticated, as for `/v2/`).
            Base | TrustChanges => (Access::None, None),
            Catalog => (Access::Catalog, None),
            TagsList { repo }
            | GetManifest { repo, .. }
            | HeadManifest { repo, .. }
            | GetBlob { repo, .. }
            | HeadBlob { repo, .. }
            | Referrers { repo, .. } => (Access::Pull, Some(repo)),
            PutManifest { repo, .. }
            | StartUpload { repo }
            | GetUpload { repo, .. }
            | PatchUpload { repo, .. }
            | PutUpload { repo, .. }
            | DeleteUpload { repo, .. } => (Access::Push, Some(repo)),
            DeleteManifest { repo, .. } | DeleteBlob { repo, .. } => (Access::Delete, Some(repo)),
            // Reading trust data is reading the repository; signing (and taking the keys
            // a signer needs) is pushing; deleting it is deleting.
            Trust { repo, op, .. } => match op {
                TrustOp::Get { .. } | TrustOp::Changes => (Access::Pull, Some(repo)),
                TrustOp::Update | TrustOp::Key(_) | TrustOp::RotateKey(_) => {
                    (Access::Push, Some(repo))
                }
                TrustOp::Delete => (Access::Delete, Some(repo)),
            },
        }
    }

    /// Parses `method` and the raw `path` (which starts with `/v2`).
    pub fn parse(method: &Method, path: &str) -> Result<Endpoint, PathError> {
        let rest = match path.strip_prefix("/v2") {
            Some("") | Some("/") => {
                return if method == Method::GET || method == Method::HEAD {
                    Ok(Endpoint::Base)
                } else {
                    Err(PathError::MethodNotAllowed)
                }
            }
            Some(r) => r.strip_prefix('/').ok_or(PathError::NotFound)?,
            None => return Err(PathError::NotFound),
        };
        if rest.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(PathError::Name(NameError::Component("..".into())));
        }
        let get_or_head = method == Method::GET || method == Method::HEAD;
        if rest == "_catalog" {
            return if get_or_head {
                Ok(Endpoint::Catalog)
            } else {
                Err(PathError::MethodNotAllowed)
            };
        }
        if rest == "_trust/changefeed" {
            return if *method == Method::GET {
                Ok(Endpoint::TrustChanges)
            } else {
                Err(PathError::MethodNotAllowed)
            };
        }
        if let Some((gun, tail)) = rest.split_once("/_trust/") {
            return trust(method, gun, tail);
        }
        let name = |s: &str| RepoName::parse(s).map_err(PathError::Name);
        let digest = |s: &str| Digest::parse(&decode_colon(s)).map_err(PathError::Digest);
        if let Some(n) = rest.strip_suffix("/tags/list") {
            let repo = name(n)?;
            return if get_or_head {
                Ok(Endpoint::TagsList { repo })
            } else {
                Err(PathError::MethodNotAllowed)
            };
        }
        if let Some((n, r)) = split_last(rest, "/manifests/") {
            let repo = name(n)?;
            let reference =
                Reference::parse(&decode_colon(r)).map_err(|error| PathError::Reference {
                    method: method.clone(),
                    error,
                })?;
            return match *method {
                Method::GET => Ok(Endpoint::GetManifest { repo, reference }),
                Method::HEAD => Ok(Endpoint::HeadManifest { repo, reference }),
                Method::PUT => Ok(Endpoint::PutManifest { repo, reference }),
                Method::DELETE => Ok(Endpoint::DeleteManifest { repo, reference }),
                _ => Err(PathError::MethodNotAllowed),
            };
        }
        if let Some(n) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            let repo = name(n)?;
            return if method == Method::POST {
                Ok(Endpoint::StartUpload { repo })
            } else {
                Err(PathError::MethodNotAllowed)
            };
        }
        if let Some((n, id)) = split_last(rest, "/blobs/uploads/") {
            if !id.contains(':') {
                let repo = name(n)?;
                let id = id.to_string();
                return match *method {
                    Method::GET | Method::HEAD => Ok(Endpoint::GetUpload { repo, id }),
                    Method::PATCH => Ok(Endpoint::PatchUpload { repo, id }),
                    Method::PUT => Ok(Endpoint::PutUpload { repo, id }),
                    Method::DELETE => Ok(Endpoint::DeleteUpload { repo, id }),
                    _ => Err(PathError::MethodNotAllowed),
                };
            }
        }
        if let Some((n, d)) = split_last(rest, "/blobs/") {
            let repo = name(n)?;
            let digest = digest(d)?;
            return match *method {
                Method::GET => Ok(Endpoint::GetBlob { repo, digest }),
                Method::HEAD => Ok(Endpoint::HeadBlob { repo, digest }),
                Method::DELETE => Ok(Endpoint::DeleteBlob { repo, digest }),
                _ => Err(PathError::MethodNotAllowed),
            };
        }
        if let Some((n, d)) = split_last(rest, "/referrers/") {
            let repo = name(n)?;
            let digest = digest(d)?;
            return if get_or_head {
                Ok(Endpoint::Referrers { repo, digest })
            } else {
                Err(PathError::MethodNotAllowed)
            };
        }
        Err(PathError::NotFound)
    }
}

/// A Notary route: `gun` is `<host>/<repository>`, `tail` what follows `/_trust/`.
fn trust(method: &Method, gun: &str, tail: &str) -> Result<Endpoint, PathError> {
    let (host, path) = gun.split_once('/').ok_or(PathError::NotFound)?;
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic() && b != b'%') {
        return Err(PathError::NotFound);
    }
    let repo = RepoName::parse(path).map_err(PathError::Name)?;
    let only = |m: Method, op: TrustOp| {
        if *method == m {
            Ok(op)
        } else {
            Err(PathError::MethodNotAllowed)
        }
    };
    let op = match tail {
        "changefeed" => only(Method::GET, TrustOp::Changes)?,
        "tuf/" | "tuf" => match *method {
            Method::POST => TrustOp::Update,
            Method::DELETE => TrustOp::Delete,
            _ => return Err(PathError::MethodNotAllowed),
        },
        _ => {
            let file = tail.strip_prefix("tuf/").ok_or(PathError::NotFound)?;
            if let Some(role) = file.strip_suffix(".key").and_then(ServerRole::parse) {
                match *method {
                    Method::GET => TrustOp::Key(role),
                    Method::POST => TrustOp::RotateKey(role),
                    _ => return Err(PathError::MethodNotAllowed),
                }
            } else {
                let (role, lookup) = trust_file(file).ok_or(PathError::NotFound)?;
                only(Method::GET, TrustOp::Get { role, lookup })?
            }
        }
    };
    Ok(Endpoint::Trust {
        host: host.to_string(),
        repo,
        op,
    })
}

/// `<role>.json`, `<version>.<role>.json` or `<role>.<hex sha256>.json` (Notary's routes
/// also match 96 and 128 hex digits, which no stored file has).
fn trust_file(file: &str) -> Option<(RoleName, Lookup)> {
    let stem = file.strip_suffix(".json")?;
    if let Some((v, role)) = stem.split_once('.') {
        if !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()) {
            let version = v.parse().ok().filter(|v: &i64| *v > 0)?;
            return Some((RoleName::parse(role)?, Lookup::Version(version)));
        }
    }
    if let Some((role, hex)) = stem.rsplit_once('.') {
        if matches!(hex.len(), 64 | 96 | 128) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let sha = hex.to_ascii_lowercase();
            return Some((RoleName::parse(role)?, Lookup::Checksum(sha)));
        }
    }
    Some((RoleName::parse(stem)?, Lookup::Current))
}

/// Splits at the last `marker` when what follows is one non-empty path segment.
fn split_last<'a>(s: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let (a, b) = s.rsplit_once(marker)?;
    (!b.is_empty() && !b.contains('/')).then_some((a, b))
}

fn decode_colon(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains("%3A") || s.contains("%3a") {
        std::borrow::Cow::Owned(s.replace("%3A", ":").replace("%3a", ":"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn table() {
        let cases: Vec<(Method, String, &str)> = vec![
            (Method::GET, "/v2/".into(), "base"),
            (Method::GET, "/v2".into(), "base"),
            (Method::GET, "/v2/_catalog".into(), "catalog"),
            (Method::GET, "/v2/a/b/tags/list".into(), "tags_list"),
            (
                Method::GET,
                "/v2/a/b/manifests/latest".into(),
                "manifest_get",
            ),
            (
                Method::HEAD,
                format!("/v2/a/manifests/{D}"),
                "manifest_head",
            ),
            (Method::PUT, "/v2/a/manifests/v1".into(), "manifest_put"),
            (
                Method::DELETE,
                format!("/v2/a/manifests/{}", D.replace(':', "%3A")),
                "manifest_delete",
            ),
            (Method::GET, format!("/v2/a/blobs/{D}"), "blob_get"),
            (
                Method::GET,
                format!("/v2/x/blobs/uploads/blobs/{D}"),
                "blob_get",
            ),
            (Method::POST, "/v2/a/blobs/uploads/".into(), "upload_start"),
            (
                Method::PATCH,
                "/v2/a/blobs/uploads/abc-1".into(),
                "upload_patch",
            ),
            (
                Method::PUT,
                "/v2/a/manifests/x/blobs/uploads/abc".into(),
                "upload_put",
            ),
            (Method::GET, format!("/v2/a/referrers/{D}"), "referrers"),
            (
                Method::GET,
                "/v2/reg.example:5000/a/b/_trust/tuf/root.json".into(),
                "trust_get",
            ),
            (Method::POST, "/v2/h/a/_trust/tuf/".into(), "trust_update"),
            (Method::DELETE, "/v2/h/a/_trust/tuf/".into(), "trust_delete"),
            (
                Method::GET,
                "/v2/h/a/_trust/tuf/timestamp.key".into(),
                "trust_key",
            ),
            (
                Method::POST,
                "/v2/h/a/_trust/tuf/snapshot.key".into(),
                "trust_key_rotate",
            ),
            (
                Method::GET,
                "/v2/h/a/_trust/changefeed".into(),
                "trust_changefeed",
            ),
        ];
        for (m, p, want) in cases {
            let e = Endpoint::parse(&m, &p).unwrap_or_else(|e| panic!("{m} {p}: {e:?}"));
            assert_eq!(e.name(), want, "{m} {p}");
        }
        assert!(matches!(
            Endpoint::parse(&Method::GET, "/v2/x/blobs/uploads/blobs/uploads/u1"),
            Ok(Endpoint::GetUpload { ref repo, .. }) if repo.as_str() == "x/blobs/uploads"
        ));
    }

    #[test]
    fn trust_files() {
        let get = |p: &str| match Endpoint::parse(&Method::GET, p) {
            Ok(Endpoint::Trust {
                host,
                repo,
                op: TrustOp::Get { role, lookup },
            }) => (host, repo.to_string(), role.to_string(), lookup),
            other => panic!("{p}: {other:?}"),
        };
        let h = "/v2/127.0.0.1:5000/team/app/_trust/tuf";
        assert_eq!(
            get(&format!("{h}/targets/releases.json")),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                "targets/releases".into(),
                Lookup::Current
            )
        );
        assert_eq!(get(&format!("{h}/3.root.json")).3, Lookup::Version(3));
        let sha = "ab".repeat(32);
        let (_, _, role, lookup) = get(&format!("{h}/targets/releases.{sha}.json"));
        assert_eq!(
            (role.as_str(), lookup),
            ("targets/releases", Lookup::Checksum(sha))
        );
        for bad in [
            "/v2/h/a/_trust/tuf/Root.json",
            "/v2/h/a/_trust/tuf/0.root.json",
            "/v2/h/a/_trust/tuf/root",
            "/v2/h/a/_trust/tuf/targets/../root.json",
            "/v2/a/_trust/tuf/root.json",
            "/v2/h/a/_trust/other",
        ] {
            assert!(Endpoint::parse(&Method::GET, bad).is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::parse(&Method::PUT, "/v2/h/a/_trust/tuf/root.json"),
            Err(PathError::MethodNotAllowed)
        );
    }

    #[test]
    fn refusals() {
        let p = |m: Method, s: &str| Endpoint::parse(&m, s);
        assert!(matches!(
            p(Method::GET, "/v2/A/tags/list"),
            Err(PathError::Name(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a%2fb/tags/list"),
            Err(PathError::Name(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a/../b/tags/list"),
            Err(PathError::Name(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a/blobs/md5:abc"),
            Err(PathError::Digest(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a/manifests/-bad"),
            Err(PathError::Reference { .. })
        ));
        assert!(matches!(
            p(Method::POST, "/v2/a/manifests/x"),
            Err(PathError::MethodNotAllowed)
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a/whatever"),
            Err(PathError::NotFound)
        ));
        assert!(matches!(p(Method::GET, "/v3/"), Err(PathError::NotFound)));
    }
}
