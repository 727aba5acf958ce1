//! Media types the registry recognises, and the rules for choosing one from an `Accept`
//! header.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Whether `mt` is one of the manifest or index media types the registry stores.
pub fn is_manifest_type(mt: &str) -> bool {
    matches!(mt, OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST)
}

/// Whether `mt` is an index (a list of manifests).
pub fn is_index_type(mt: &str) -> bool {
    matches!(mt, OCI_INDEX | DOCKER_LIST)
}

/// A syntactically valid media type: `type/subtype` with RFC 6838 restricted names, and
/// no parameters.
pub fn is_valid_media_type(mt: &str) -> bool {
    let Some((t, s)) = mt.split_once('/') else {
        return false;
    };
    let name_ok = |x: &str| {
        !x.is_empty()
            && x.len() <= 127
            && x.as_bytes()[0].is_ascii_alphanumeric()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    name_ok(t) && name_ok(s)
}

/// Strips parameters and white space from a `Content-Type` value.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Whether a stored manifest of type `stored` may be served to a client that sent these
/// `Accept` values (every header line, each possibly a comma-separated list).
///
/// A client that sends no `Accept` at all, or `*/*`, takes anything. OCI types are always
/// served (every current client understands them, and clients that only list Docker types
/// still pull OCI content from Distribution); the rule exists so that a Docker-only client
/// is never handed something it cannot parse while an acceptable type is listed.
pub fn acceptable(stored: &str, accept: &[&str]) -> bool {
    let mut any = false;
    for line in accept {
        for item in line.split(',') {
            let e = essence(item);
            if e.is_empty() {
                continue;
            }
            any = true;
            if e == "*/*" || e == stored || e == "application/*" || e == "application/json" {
                return true;
            }
        }
    }
    !any || stored == OCI_MANIFEST || stored == OCI_INDEX
}
