//! Reading a checkpoint's `safetensors` file one tensor at a time, from bytes in memory
//! or straight from the file, so that loading a file never holds its bytes beside the
//! values read from them.
//!
//! Everything is checked before any tensor is read: the framing (with the sizes a
//! truncated file has and needs) and the JSON header, whose parsing (`safetensors`'
//! own) checks that the tensors lie end to end, each as long as its dtype and shape
//! say. A tensor's values are then allocated only once the file is known to hold them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::Metadata;
use safetensors::Dtype;

use crate::error::{Error, Result};

/// Bytes of safetensors' little-endian header-length prefix.
const LENGTH_PREFIX: usize = 8;

/// safetensors' limit on the JSON header (it refuses longer ones).
const MAX_HEADER: u64 = 100_000_000;

/// Where a checkpoint's bytes come from.
pub(super) trait Source {
    /// The length in bytes.
    fn len(&self) -> u64;

    /// Fills `out` with the bytes from `offset` on, which the caller has checked lie
    /// within the length.
    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> std::io::Result<()>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(out.len())?));
        let bytes = range.and_then(|range| self.get(range)).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end")
        })?;
        out.copy_from_slice(bytes);
        Ok(())
    }
}

/// A checkpoint file, read where each tensor lies.
pub(super) struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    pub(super) fn open(path: &Path) -> Result<FileSource> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(FileSource { file, len })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(out)
    }
}

/// A checked `safetensors` file whose tensors are read on demand.
pub(super) struct Reader<S> {
    source: S,
    /// Where the tensors' data starts.
    data_start: u64,
    header: Metadata,
    path: PathBuf,
}

impl<S: Source> Reader<S> {
    /// Checks the framing, the header and where every tensor lies; `path` names the
    /// file in errors.
    pub(super) fn open(mut source: S, path: &Path) -> Result<Reader<S>> {
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (data_start, header) = read_header(&mut source, path).map_err(bad)?;
        Ok(Reader {
            source,
            data_start,
            header,
            path: path.to_path_buf(),
        })
    }

    /// The header's string metadata, if it has any.
    pub(super) fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.header.metadata().as_ref()
    }

    /// The names of all tensors.
    pub(super) fn names(&self) -> Vec<String> {
        self.header.offset_keys()
    }

    /// The shape of tensor `name`, if the file has it.
    pub(super) fn shape(&self, name: &str) -> Option<&[usize]> {
        self.header.info(name).map(|info| &info.shape[..])
    }

    /// Reads the `F32` tensor `name` of exactly `shape`, naming what differs; every value
    /// must be finite.
    pub(super) fn read(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let bad = |reason: String| Error::Checkpoint {
            path: self.path.clone(),
            reason,
        };
        let info = self
            .header
            .info(name)
            .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
        if info.dtype != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name} has dtype {:?}, expected F32",
                info.dtype
            )));
        }
        if info.shape != shape {
            return Err(bad(format!(
                "tensor {name} has shape {:?}, the network needs {shape:?}",
                info.shape
            )));
        }
        // Parsing the header matched every byte range to its dtype and shape and laid the
        // ranges end to end, and `read_header` the file's length to them: the file holds
        // these values.
        let (start, end) = info.data_offsets;
        let mut values = vec![0.0f32; (end - start) / 4];
        let offset = self.data_start + start as u64;
        self.source
            .read_at(offset, bytemuck::cast_slice_mut(&mut values))
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        if cfg!(target_endian = "big") {
            for v in &mut values {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor {name} holds the non-finite value {} at index {i}",
                values[i]
            )));
        }
        Ok(values)
    }
}

/// The framing and the parsed header, or what is wrong with them, so that the error
/// says what to fix: a truncated file (with the expected and actual sizes), trailing
/// bytes, or a file that is no safetensors file at all.
fn read_header(
    source: &mut impl Source,
    path: &Path,
) -> std::result::Result<(u64, Metadata), String> {
    let len = source.len();
    let io = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    // The first bytes: the length prefix, and the start of the file for the message.
    let mut start = vec![0u8; len.min(16) as usize];
    source.read_at(0, &mut start).map_err(io)?;
    let Some(prefix) = start.get(..LENGTH_PREFIX) else {
        return Err(format!(
            "truncated: {len} bytes, fewer than the {LENGTH_PREFIX}-byte length prefix a \
             safetensors file starts with"
        ));
    };
    let mut n = [0u8; LENGTH_PREFIX];
    n.copy_from_slice(prefix);
    let header_len = u64::from_le_bytes(n);
    let json = start.get(LENGTH_PREFIX).is_none_or(|&b| b == b'{');
    if header_len > MAX_HEADER || !json {
        return Err(format!(
            "not a checkpoint: a safetensors file starts with an 8-byte header length and \
             a JSON header, this one with {:?}",
            String::from_utf8_lossy(&start)
        ));
    }
    let header_end = LENGTH_PREFIX as u64 + header_len;
    if len < header_end {
        return Err(format!(
            "truncated: {len} bytes, but its header alone needs {header_end}"
        ));
    }
    // At most MAX_HEADER bytes, and the file holds them.
    let mut header = vec![0u8; header_len as usize];
    source
        .read_at(LENGTH_PREFIX as u64, &mut header)
        .map_err(io)?;
    let meta: Metadata = serde_json::from_slice(&header)
        .map_err(|e| format!("not a valid safetensors header: {e}"))?;
    let expected = u64::try_from(meta.data_len())
        .ok()
        .and_then(|data| header_end.checked_add(data))
        .ok_or_else(|| {
            format!(
                "the header declares {} bytes of tensors, more than can exist",
                meta.data_len()
            )
        })?;
    match len.cmp(&expected) {
        std::cmp::Ordering::Less => Err(format!(
            "truncated: {len} bytes, but its header and tensors need {expected} (the last \
             {} bytes are missing)",
            expected - len
        )),
        std::cmp::Ordering::Greater => Err(format!(
            "{} unexpected bytes after the last tensor: the file has {len} bytes, its \
             header and tensors need {expected}",
            len - expected
        )),
        std::cmp::Ordering::Equal => Ok((header_end, meta)),
    }
}
