//! The IDX binary format used by MNIST (<http://yann.lecun.com/exdb/mnist/>).
//!
//! Layout: a big-endian magic `0x0000TTDD` (`TT` = element type, `DD` = number of
//! dimensions), one big-endian `u32` per dimension, then the elements row-major.
//! Only the unsigned-byte type (`0x08`) is supported.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The IDX element type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// The most dimensions accepted; MNIST uses 1 (labels) and 3 (images).
const MAX_DIMS: usize = 4;

/// Largest payload accepted, so a forged header cannot request absurd sizes.
const MAX_PAYLOAD: u64 = 1 << 32;

/// Deflate cannot expand data by more than about 1032:1, so a larger claimed
/// size relative to the compressed file is certainly bogus.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension, outermost first (e.g. `[n, 28, 28]`).
    pub dims: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// What the header of an IDX file claims.
struct Header {
    dims: Vec<usize>,
    /// Bytes taken by the magic and the dimension sizes.
    header_len: usize,
    /// Bytes the elements must take (product of `dims`).
    payload_len: usize,
}

/// Reads an IDX file, gunzipping it first when it starts with the gzip magic.
///
/// The magic, the element type (unsigned bytes only), the number of dimensions
/// (1 to 4) and the payload size (exactly the product of the dimensions) are all
/// checked, and no buffer larger than what the file really provides is allocated.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&GZIP_MAGIC) {
        let bytes = gunzip_idx(&raw, path)?;
        parse_idx(&bytes, path)
    } else {
        parse_idx(&raw, path)
    }
}

/// Parses IDX bytes that are already decompressed; `path` only names the
/// source in error messages.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let header = parse_header(bytes, path)?;
    let payload = bytes.get(header.header_len..).unwrap_or(&[]);
    if payload.len() != header.payload_len {
        let what = if payload.len() < header.payload_len {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(corrupt(
            path,
            format!(
                "{what}: header {:?} needs {} payload bytes, file has {}",
                header.dims,
                header.payload_len,
                payload.len()
            ),
        ));
    }
    Ok(IdxArray {
        dims: header.dims,
        data: payload.to_vec(),
    })
}

/// Decompresses a gzipped IDX file, reading at most one byte more than the
/// header claims so that trailing data is still detected by [`parse_idx`].
fn gunzip_idx(raw: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut decoder = flate2::read::GzDecoder::new(raw);
    let mut bytes = vec![0u8; 4];
    read_exact_gz(&mut decoder, &mut bytes, path)?;
    let magic = first_four(&bytes, path)?;
    check_magic(magic, path)?;
    let mut dims = vec![0u8; 4 * usize::from(magic[3])];
    read_exact_gz(&mut decoder, &mut dims, path)?;
    bytes.extend_from_slice(&dims);
    let header = parse_header(&bytes, path)?;
    let limit = header.payload_len as u64;
    let plausible = (raw.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    if limit > plausible {
        return Err(corrupt(
            path,
            format!(
                "header claims {limit} bytes, impossible for a {} byte gzip file",
                raw.len()
            ),
        ));
    }
    decoder
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| corrupt(path, format!("gzip: {e}")))?;
    Ok(bytes)
}

fn read_exact_gz(decoder: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<()> {
    decoder.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(path, "truncated header (after gunzip)")
        } else {
            corrupt(path, format!("gzip: {e}"))
        }
    })
}

/// Validates the magic and dimensions at the start of `bytes`.
fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let magic = first_four(bytes, path)?;
    check_magic(magic, path)?;
    let ndims = usize::from(magic[3]);
    let header_len = 4 + 4 * ndims;
    let dim_bytes = bytes.get(4..header_len).ok_or_else(|| {
        corrupt(
            path,
            format!("truncated header: {ndims} dimensions declared"),
        )
    })?;
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let payload_len = payload_len(&dims, path)?;
    Ok(Header {
        dims,
        header_len,
        payload_len,
    })
}

fn first_four(bytes: &[u8], path: &Path) -> Result<[u8; 4]> {
    bytes
        .get(..4)
        .and_then(|m| <[u8; 4]>::try_from(m).ok())
        .ok_or_else(|| corrupt(path, "file too short for an IDX header"))
}

fn check_magic(magic: [u8; 4], path: &Path) -> Result<()> {
    if magic[0] != 0 || magic[1] != 0 {
        return Err(corrupt(
            path,
            format!(
                "bad IDX magic 0x{:08x}: first two bytes must be zero",
                u32::from_be_bytes(magic)
            ),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(corrupt(
            path,
            format!(
                "unsupported IDX element type 0x{:02x} (only unsigned byte 0x08)",
                magic[2]
            ),
        ));
    }
    let ndims = usize::from(magic[3]);
    if !(1..=MAX_DIMS).contains(&ndims) {
        return Err(corrupt(
            path,
            format!("unsupported IDX dimension count {ndims} (expected 1..={MAX_DIMS})"),
        ));
    }
    Ok(())
}

/// Product of the dimensions, rejecting overflow and anything above `MAX_PAYLOAD`.
fn payload_len(dims: &[usize], path: &Path) -> Result<usize> {
    let total = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= MAX_PAYLOAD)
        .and_then(|n| usize::try_from(n).ok());
    total.ok_or_else(|| {
        corrupt(
            path,
            format!("IDX dimensions {dims:?} claim an implausibly large payload"),
        )
    })
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::CorruptFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
