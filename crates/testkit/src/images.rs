//! Small random test images built in Rust (no network: only loopback exists here): unique
//! names and bytes, layers, images, indexes, OCI layouts, and reading back what clients wrote.

use crate::wire::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// splitmix64: fast, good enough to make layers whose bytes never repeat across tests.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        Rng(seed())
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}

/// A short lowercase token, unique within this machine for the test run.
pub fn unique() -> String {
    format!("{:012x}", Rng::new().next_u64() & 0xffff_ffff_ffff)
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn hex_of(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// One filesystem layer: the tar (whose digest is the config's diff id) and its gzip form.
#[derive(Clone)]
pub struct Layer {
    pub files: Vec<(String, Vec<u8>)>,
    pub tar: Vec<u8>,
    pub diff_id: String,
    pub gz: Vec<u8>,
    pub digest: String,
}

impl Layer {
    /// `files` random files of `size` bytes each under `dir/`.
    pub fn random(rng: &mut Rng, dir: &str, files: usize, size: usize) -> Layer {
        let files: Vec<(String, Vec<u8>)> = (0..files)
            .map(|i| (format!("{dir}/file-{i}.bin"), rng.bytes(size)))
            .collect();
        Layer::from_files(files)
    }

    pub fn from_files(files: Vec<(String, Vec<u8>)>) -> Layer {
        let mut b = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        for (name, _) in &files {
            let mut p = Path::new(name).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_path_buf());
                p = d.parent();
            }
        }
        for d in &dirs {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, format!("{}/", d.display()), std::io::empty())
                .expect("tar dir");
        }
        for (name, data) in &files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data.as_slice())
                .expect("tar file");
        }
        let tar = b.into_inner().expect("tar");
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        Layer {
            diff_id: sha256_digest(&tar),
            digest: sha256_digest(&gz),
            files,
            tar,
            gz,
        }
    }
}

/// A complete single-platform OCI image: random layers, a config, a manifest.
pub struct Image {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    /// `layers` layers of three files of `file_kib` KiB each; a random label makes the
    /// config (and so the image id) unique even when layers are shared.
    pub fn random(layers: usize, file_kib: usize, arch: &str) -> Image {
        let mut rng = Rng::new();
        let layers = (0..layers)
            .map(|i| Layer::random(&mut rng, &format!("layer{i}"), 3, file_kib * 1024))
            .collect();
        Image::from_layers(layers, arch)
    }

    pub fn from_layers(layers: Vec<Layer>, arch: &str) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = layers
            .iter()
            .map(
                |l| json!({"created_by": format!("berth e2e layer {}", &hex_of(&l.diff_id)[..12])}),
            )
            .collect();
        let config = serde_json::to_vec(&json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/layer0/file-0.bin"],
                "Labels": {"org.example.berth-e2e": unique()}
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history
        }))
        .expect("config json");
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.gz.len()})).collect::<Vec<_>>()
        }))
        .expect("manifest json");
        Image {
            arch: arch.to_string(),
            manifest_digest: sha256_digest(&manifest),
            layers,
            config,
            config_digest,
            manifest,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
            "platform": {"architecture": self.arch, "os": "linux"}
        })
    }

    /// Writes a `docker save` style archive (uncompressed layers) tagged `repo_tag`,
    /// readable by `docker load`, `podman load` and `crane push`.
    pub fn write_docker_archive(&self, path: &Path, repo_tag: &str) {
        let mut b = tar::Builder::new(std::fs::File::create(path).expect("create archive"));
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data).expect("archive entry");
        };
        let config_name = format!("{}.json", hex_of(&self.config_digest));
        add(&config_name, &self.config);
        let mut layer_names = Vec::new();
        for l in &self.layers {
            let name = format!("{}/layer.tar", hex_of(&l.diff_id));
            add(&name, &l.tar);
            layer_names.push(name);
        }
        let manifest = serde_json::to_vec(
            &json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]),
        )
        .expect("json");
        add("manifest.json", &manifest);
        b.into_inner()
            .expect("archive")
            .sync_all()
            .expect("sync archive");
    }
}

/// A multi-platform image: an OCI index over single-platform images.
pub struct Index {
    pub images: Vec<Image>,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Index {
    pub fn new(images: Vec<Image>) -> Index {
        let bytes = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": images.iter().map(Image::descriptor).collect::<Vec<_>>()
        }))
        .expect("index json");
        Index {
            digest: sha256_digest(&bytes),
            images,
            bytes,
        }
    }
}

/// Writes an OCI image layout directory (blobs + `index.json` with tagged entries).
pub struct OciLayout {
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl OciLayout {
    pub fn new(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir layout");
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        OciLayout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    fn blob(&self, digest: &str, bytes: &[u8]) {
        std::fs::write(self.dir.join("blobs/sha256").join(hex_of(digest)), bytes)
            .expect("write blob");
    }

    fn image_blobs(&self, image: &Image) {
        self.blob(&image.config_digest, &image.config);
        for l in &image.layers {
            self.blob(&l.digest, &l.gz);
        }
        self.blob(&image.manifest_digest, &image.manifest);
    }

    pub fn add_image(&mut self, image: &Image, tag: &str) -> &mut Self {
        self.image_blobs(image);
        let mut d = image.descriptor();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.entries.push(d);
        self.write_index();
        self
    }

    pub fn add_index(&mut self, index: &Index, tag: &str) -> &mut Self {
        for i in &index.images {
            self.image_blobs(i);
        }
        self.blob(&index.digest, &index.bytes);
        self.entries.push(json!({
            "mediaType": OCI_INDEX,
            "digest": index.digest,
            "size": index.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }));
        self.write_index();
        self
    }

    fn write_index(&self) {
        let v = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(&v).expect("json"),
        )
        .expect("index.json");
    }
}

/// Reads an OCI layout written by a client: tag -> descriptor of its `index.json`.
pub fn read_layout_index(dir: &Path) -> BTreeMap<String, Value> {
    let raw = std::fs::read(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("{}/index.json: {e}", dir.display()));
    let v: Value = serde_json::from_slice(&raw).expect("index.json is JSON");
    let mut out = BTreeMap::new();
    for m in v["manifests"].as_array().expect("manifests array") {
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        out.insert(tag, m.clone());
    }
    out
}

/// The blob `digest` of an OCI layout, checked against its digest.
pub fn read_layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let p = dir.join("blobs/sha256").join(hex_of(digest));
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        sha256_digest(&b),
        digest,
        "{} does not hash to its name",
        p.display()
    );
    b
}

/// A digest printed somewhere in a client's output (`sha256:` and 64 hex digits).
pub fn find_digest(text: &str) -> Option<String> {
    let i = text.find("sha256:")?;
    let hex: String = text[i + 7..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (hex.len() == 64).then(|| format!("sha256:{hex}"))
}

/// The uncompressed bytes of a gzip layer blob.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("layer blob is not gzip");
    out
}

/// `(config digest, layer digests)` named by a served image manifest.
pub fn manifest_parts(manifest: &Value) -> (String, Vec<String>) {
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no config digest in {manifest}"))
        .to_string();
    let layers = manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {manifest}"))
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect();
    (config, layers)
}
