//! Fuzzes manifest parsing and validation with every content type the registry sees:
//! arbitrary bytes are parsed or refused, never panic.
#![no_main]
use berth_oci::ParsedManifest;
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&t, body)) = data.split_first() else { return };
    if let Ok(m) = ParsedManifest::parse(body, TYPES[t as usize % TYPES.len()]) {
        assert!(berth_oci::media::is_manifest_type(&m.media_type));
        for d in m.required_blobs() {
            assert!(d.size >= 0);
        }
    }
});
