//! The key grammar every store shares: where a committed blob lives relative to the
//! store's root, which upload ids are acceptable, and how to recognise a blob key when
//! listing. Kept in one place so that the filesystem and S3 layouts cannot drift apart and
//! so that an upload id can never smuggle a path separator into a key.

use crate::BlobError;
use berth_oci::Digest;

/// Longest upload id a store accepts.
pub(crate) const MAX_UPLOAD_ID_LEN: usize = 64;

/// True if `id` matches `[A-Za-z0-9-]{1,64}`.
pub(crate) fn is_valid_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Refuses an id outside `[A-Za-z0-9-]{1,64}` as an unknown upload, so that no caller
/// mistake can turn an id into a path.
pub(crate) fn check_upload_id(id: &str) -> Result<(), BlobError> {
    if is_valid_upload_id(id) {
        Ok(())
    } else {
        Err(BlobError::UploadNotFound(id.chars().take(80).collect()))
    }
}

/// What an upload's stored bytes must reach: the acknowledged offset an append continues
/// from, or the length a commit takes.
pub(crate) enum Needed {
    Offset(u64),
    Commit(u64),
}

/// Refuses an upload that holds `have` bytes, fewer than `needed`: acknowledged bytes are
/// gone, and going on would store a blob with a hole.
pub(crate) fn check_holds(id: &str, have: u64, needed: Needed) -> Result<(), BlobError> {
    let message = match needed {
        Needed::Offset(offset) if have < offset => {
            format!("upload {id} holds {have} bytes, fewer than the acknowledged offset {offset}")
        }
        Needed::Commit(len) if have < len => {
            format!("upload {id} holds {have} bytes, fewer than the {len} to commit")
        }
        _ => return Ok(()),
    };
    Err(BlobError::Backend(message))
}

/// `<algo>/<first 2 hex>/<hex>`: a committed blob's key below the `blobs` directory.
pub(crate) fn blob_rel(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{}/{}/{}", digest.algorithm().as_str(), &hex[..2], hex)
}

/// The digest named by the three components below `blobs/`, if they are exactly
/// `<algo>/<first 2 hex>/<hex>` for a supported algorithm.
pub(crate) fn parse_blob_rel(algo: &str, fan: &str, hex: &str) -> Option<Digest> {
    let digest = Digest::parse(&format!("{algo}:{hex}")).ok()?;
    (digest.algorithm().as_str() == algo && hex.get(..2) == Some(fan)).then_some(digest)
}

/// The digest named by a store-relative key `blobs/<algo>/<2 hex>/<hex>`, if it is one.
pub(crate) fn parse_blob_key(key: &str) -> Option<Digest> {
    let mut parts = key.split('/');
    let (Some("blobs"), Some(algo), Some(fan), Some(hex), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    parse_blob_rel(algo, fan, hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for ok in [
            "a",
            "A-0",
            "0d4c7a1e-5b7f-4f7e-9d1a-2f6c0b7e9a11",
            long.as_str(),
        ] {
            assert!(is_valid_upload_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a.b",
            "a b",
            "é",
            "a\0",
            too_long.as_str(),
        ] {
            assert!(!is_valid_upload_id(bad), "{bad:?}");
            assert!(matches!(
                check_upload_id(bad),
                Err(BlobError::UploadNotFound(_))
            ));
        }
    }

    #[test]
    fn blob_keys_round_trip() {
        let d = Digest::sha256_of(b"hello");
        let rel = blob_rel(&d);
        assert_eq!(&rel[..10], "sha256/2c/");
        assert_eq!(parse_blob_key(&format!("blobs/{rel}")), Some(d.clone()));
        let hex = d.hex();
        let bad = [
            format!("blobs/sha256/{}/{hex}", "00"),
            format!("blobs/sha512/{}/{hex}", &hex[..2]),
            format!("blobs/sha256/{}/{}", &hex[..2], hex.to_uppercase()),
            format!("blobs/sha256/{}/{hex}/x", &hex[..2]),
            format!("blobs/sha256/{hex}"),
            format!("blob/sha256/{}/{hex}", &hex[..2]),
            format!("blobs/md5/{}/{hex}", &hex[..2]),
        ];
        for key in bad {
            assert_eq!(parse_blob_key(&key), None, "{key}");
        }
    }
}
