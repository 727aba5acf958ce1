//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and a hasher whose state can be saved
//! between the chunks of an upload and resumed in another process.
//!
//! The hasher drives `sha2`'s compression functions directly (SHA-NI when the CPU has it)
//! and keeps the chaining state, the pending partial block and the length itself, so the
//! whole state serialises to a few dozen bytes that the metadata store keeps with the upload.

use sha2::digest::consts::{U128, U64};
use sha2::digest::generic_array::{ArrayLength, GenericArray};
use std::fmt;
use std::str::FromStr;

/// A digest algorithm the registry can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in `algorithm:hex`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest the registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest format: expected algorithm:encoded")]
    Format,
    #[error("unsupported digest algorithm {0:?}: sha256 and sha512 are supported")]
    UnsupportedAlgorithm(String),
    #[error("invalid {0} digest: expected {1} lowercase hexadecimal characters")]
    Encoding(&'static str, usize),
}

/// A validated digest: a supported algorithm and its lowercase hex encoding.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algo: Algorithm,
    /// The whole `algorithm:hex` string, kept so that `as_str` is free.
    text: String,
}

impl Digest {
    /// Parses `algorithm:encoded` per the spec's grammar; only sha256 and sha512 are accepted.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, enc) = s.split_once(':').ok_or(DigestError::Format)?;
        if alg.is_empty() || enc.is_empty() || s.len() > 256 {
            return Err(DigestError::Format);
        }
        let alg_ok = alg.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        let enc_ok = enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
        if !alg_ok || !enc_ok {
            return Err(DigestError::Format);
        }
        let algo = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        };
        let hex_ok = enc.len() == algo.hex_len()
            && enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(DigestError::Encoding(algo.as_str(), algo.hex_len()));
        }
        Ok(Digest {
            algo,
            text: s.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(bytes);
        d.finish()
    }

    /// The digest of `bytes` with `algo`.
    pub fn of(algo: Algorithm, bytes: &[u8]) -> Digest {
        let mut d = Digester::new(algo);
        d.update(bytes);
        d.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algo
    }
    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.text[self.algo.as_str().len() + 1..]
    }
    /// `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone)]
enum State {
    Sha256([u32; 8]),
    Sha512([u64; 8]),
}

const H256: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const H512: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// Incremental hasher whose state can be saved with [`Digester::to_bytes`] and restored
/// with [`Digester::from_bytes`], so an upload can continue in another process.
#[derive(Clone)]
pub struct Digester {
    state: State,
    /// Bytes of an incomplete block (fewer than the block size).
    buf: Vec<u8>,
    /// Total bytes fed so far.
    len: u64,
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digester({}, {} bytes)",
            self.algorithm().as_str(),
            self.len
        )
    }
}

impl Digester {
    pub fn new(algo: Algorithm) -> Digester {
        let state = match algo {
            Algorithm::Sha256 => State::Sha256(H256),
            Algorithm::Sha512 => State::Sha512(H512),
        };
        Digester {
            state,
            buf: Vec::with_capacity(128),
            len: 0,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn block_size(&self) -> usize {
        match self.state {
            State::Sha256(_) => 64,
            State::Sha512(_) => 128,
        }
    }

    fn compress(&mut self, blocks: &[u8]) {
        debug_assert_eq!(blocks.len() % self.block_size(), 0);
        match &mut self.state {
            State::Sha256(h) => in_batches::<U64, 64>(blocks, |b| sha2::compress256(h, b)),
            State::Sha512(h) => in_batches::<U128, 32>(blocks, |b| sha2::compress512(h, b)),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        let bs = self.block_size();
        if !self.buf.is_empty() {
            let take = (bs - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == bs {
                let block = std::mem::take(&mut self.buf);
                self.compress(&block);
                self.buf = block;
                self.buf.clear();
            }
        }
        let whole = data.len() - data.len() % bs;
        if whole > 0 {
            self.compress(&data[..whole]);
        }
        self.buf.extend_from_slice(&data[whole..]);
    }

    /// Finishes and returns the digest.
    pub fn finish(mut self) -> Digest {
        let bs = self.block_size();
        let len_bytes = if bs == 64 { 8 } else { 16 };
        let bits = (self.len as u128) * 8;
        let mut tail = std::mem::take(&mut self.buf);
        tail.push(0x80);
        while !(tail.len() + len_bytes).is_multiple_of(bs) {
            tail.push(0);
        }
        if len_bytes == 8 {
            tail.extend_from_slice(&(bits as u64).to_be_bytes());
        } else {
            tail.extend_from_slice(&bits.to_be_bytes());
        }
        self.compress(&tail);
        let hex = match &self.state {
            State::Sha256(h) => {
                let mut out = [0u8; 32];
                for (i, w) in h.iter().enumerate() {
                    out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
                }
                hex::encode(out)
            }
            State::Sha512(h) => {
                let mut out = [0u8; 64];
                for (i, w) in h.iter().enumerate() {
                    out[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
                }
                hex::encode(out)
            }
        };
        let algo = self.algorithm();
        Digest {
            algo,
            text: format!("{}:{}", algo.as_str(), hex),
        }
    }

    /// Serialises the whole state: version, algorithm, length, chaining words, pending bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 64 + 128 + 2);
        out.push(1u8);
        out.push(match self.state {
            State::Sha256(_) => 1,
            State::Sha512(_) => 2,
        });
        out.extend_from_slice(&self.len.to_be_bytes());
        match &self.state {
            State::Sha256(h) => h
                .iter()
                .for_each(|w| out.extend_from_slice(&w.to_be_bytes())),
            State::Sha512(h) => h
                .iter()
                .for_each(|w| out.extend_from_slice(&w.to_be_bytes())),
        }
        out.extend_from_slice(&self.buf);
        out
    }

    /// Restores a state saved by [`Digester::to_bytes`]; `None` if the bytes are not one.
    pub fn from_bytes(b: &[u8]) -> Option<Digester> {
        if b.len() < 10 || b[0] != 1 {
            return None;
        }
        let len = u64::from_be_bytes(b[2..10].try_into().ok()?);
        let rest = &b[10..];
        let (state, buf, bs) = match b[1] {
            1 => {
                let (h, buf) = state_words(rest, |w| Some(u32::from_be_bytes(w.try_into().ok()?)))?;
                (State::Sha256(h), buf, 64)
            }
            2 => {
                let (h, buf) = state_words(rest, |w| Some(u64::from_be_bytes(w.try_into().ok()?)))?;
                (State::Sha512(h), buf, 128)
            }
            _ => return None,
        };
        if buf.len() >= bs || buf.len() as u64 != len % bs as u64 {
            return None;
        }
        let mut v = Vec::with_capacity(bs);
        v.extend_from_slice(buf);
        Some(Digester { state, buf: v, len })
    }
}

/// The eight big-endian words of a SHA-2 state (of `T`'s size) at the front of `b`, and
/// what follows them; `None` when `b` is shorter.
fn state_words<T: Copy + Default>(
    b: &[u8],
    word: impl Fn(&[u8]) -> Option<T>,
) -> Option<([T; 8], &[u8])> {
    let size = std::mem::size_of::<T>();
    let (words, rest) = b.split_at_checked(8 * size)?;
    let mut h = [T::default(); 8];
    for (w, bytes) in h.iter_mut().zip(words.chunks_exact(size)) {
        *w = word(bytes)?;
    }
    Some((h, rest))
}

/// Hands `blocks` (whole blocks of `B` bytes) to `compress` up to `K` blocks per call:
/// sha2 checks the CPU's features once per call.
fn in_batches<B: ArrayLength<u8>, const K: usize>(
    blocks: &[u8],
    mut compress: impl FnMut(&[GenericArray<u8, B>]),
) {
    let size = B::USIZE;
    let mut batch: [GenericArray<u8, B>; K] = std::array::from_fn(|_| GenericArray::default());
    for group in blocks.chunks(size * K) {
        let n = group.len() / size;
        for (dst, src) in batch.iter_mut().zip(group.chunks_exact(size)) {
            dst.copy_from_slice(src);
        }
        compress(&batch[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest as _;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::sha256_of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(Algorithm::Sha512, b"abc").hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn parse_table() {
        let ok = ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"];
        for s in ok {
            assert_eq!(Digest::parse(s).unwrap().as_str(), s);
        }
        let bad: &[(&str, DigestError)] = &[
            ("sha256", DigestError::Format),
            (":abc", DigestError::Format),
            ("sha256:", DigestError::Format),
            ("SHA256:abc", DigestError::Format),
            ("sha256:xyz!", DigestError::Format),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                DigestError::UnsupportedAlgorithm("md5".into()),
            ),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                DigestError::Encoding("sha256", 64),
            ),
            ("sha256:e3b0", DigestError::Encoding("sha256", 64)),
        ];
        for (s, e) in bad {
            assert_eq!(&Digest::parse(s).unwrap_err(), e, "{s}");
        }
    }

    proptest! {
        #[test]
        fn matches_sha2_across_save_and_restore(data in proptest::collection::vec(any::<u8>(), 0..2000), cuts in proptest::collection::vec(0usize..2000, 0..6), sha512 in any::<bool>()) {
            let algo = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut d = Digester::new(algo);
            let mut at = 0;
            for c in cuts {
                d.update(&data[at..c]);
                at = c;
                d = Digester::from_bytes(&d.to_bytes()).unwrap();
            }
            d.update(&data[at..]);
            let want = if sha512 { hex::encode(sha2::Sha512::digest(&data)) } else { hex::encode(sha2::Sha256::digest(&data)) };
            let got = d.finish();
            prop_assert_eq!(got.hex(), want);
        }
    }
}
