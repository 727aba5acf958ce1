//! What every harness says on the wire: media types, credentials in the forms clients and
//! headers take them.

pub use berth_oci::media::{DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
/// The layer media type the built images use.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// What a client that understands every current format sends.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// `USER:PASSWORD`, the value of skopeo's `--creds`, `--src-creds` and `--dest-creds` and
/// of podman's and buildah's `--creds`.
pub fn creds(user: &str, password: &str) -> String {
    format!("{user}:{password}")
}

/// The `Authorization` header value of Basic credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
