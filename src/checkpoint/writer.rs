//! Writing a checkpoint's `safetensors` file: which tensors it holds and where each one's
//! values live in a run's state ([`plan`]), and a writer that streams them to the file
//! one piece at a time ([`write_file`]), atomically. A checkpoint in memory lends its
//! vectors; a trainer reads its buffers piece by piece, so saving a run holds none of
//! its state twice.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

use super::torch_index;
use crate::error::{Error, Result};
use crate::layer::LayerSpec;

/// Where a tensor of the file lives in a run's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// These elements of the parameters (a layer's weights or bias).
    Params(Range<usize>),
    /// The learner's tensor of this index (in the list given to [`plan`]).
    Tensor(usize),
    /// Optimizer moment `i` of the parameters.
    Moment(usize),
    /// Optimizer moment `i` of the learner's trainable tensors.
    LearnerMoment(usize),
}

/// One tensor of the file: name, shape, and where its values are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) part: Part,
}

/// The tensors of a checkpoint file for `layers` holding `params` parameters, the
/// learner's `tensors` (name and shape) and, when the learner trains tensors of its own,
/// their moments of `learner_moments` floats. Errors name what does not fit: parameters
/// the layers do not account for, or a learner tensor under a reserved name.
pub(crate) fn plan(
    layers: &[LayerSpec],
    params: usize,
    tensors: &[(&str, &[usize])],
    learner_moments: Option<usize>,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    let mut offset = 0usize;
    for (l, layer) in layers.iter().enumerate() {
        let Some(shape) = layer.weight_shape() else {
            continue;
        };
        let (w, b) = (shape.len(), shape.rows);
        let weights = offset..offset.saturating_add(w);
        let bias = weights.end..weights.end.saturating_add(b);
        if bias.end > params {
            return Err(unfit(format!("parameters too short for layer {l}")));
        }
        offset = bias.end;
        let m = torch_index(layers, l);
        planned.push(Planned {
            name: format!("layers.{m}.weight"),
            shape: shape.torch_shape(),
            part: Part::Params(weights),
        });
        planned.push(Planned {
            name: format!("layers.{m}.bias"),
            shape: vec![b],
            part: Part::Params(bias),
        });
    }
    if offset != params {
        return Err(unfit(format!(
            "{params} parameters for layers needing {offset}"
        )));
    }
    for (k, &(name, shape)) in tensors.iter().enumerate() {
        if name.starts_with("layers.") || name.starts_with("optimizer.") {
            return Err(unfit(format!("learner tensor name {name:?} is reserved")));
        }
        planned.push(Planned {
            name: name.to_string(),
            shape: shape.to_vec(),
            part: Part::Tensor(k),
        });
    }
    if let Some(len) = learner_moments {
        for i in 0..2 {
            planned.push(Planned {
                name: format!("optimizer.learner{i}"),
                shape: vec![len],
                part: Part::LearnerMoment(i),
            });
        }
    }
    for i in 0..2 {
        planned.push(Planned {
            name: format!("optimizer.state{i}"),
            shape: vec![params],
            part: Part::Moment(i),
        });
    }
    Ok(planned)
}

/// A checkpoint error whose path the caller fills in.
fn unfit(reason: String) -> Error {
    Error::Checkpoint {
        path: PathBuf::new(),
        reason,
    }
}

/// The number of values `shape` holds, if it does not overflow.
fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Takes a tensor's values one consecutive slice after another.
pub(crate) type Sink<'a> = dyn FnMut(&[f32]) -> Result<()> + 'a;

/// A tensor's values handed over piece by piece: `values(tensor, sink)` gives `sink`
/// one or more consecutive slices that together hold them.
pub(crate) type Values<'a> = dyn FnMut(&Planned, &mut Sink<'_>) -> Result<()> + 'a;

/// Writes a checkpoint to `out`: the header from `metadata` and the tensors' names and
/// shapes (`safetensors`' layout: all `F32`, in name order, end to end, the header padded
/// to 8 bytes), then each tensor's values from `values`. `path` names the file in
/// errors.
pub(crate) fn write_tensors(
    out: &mut dyn Write,
    path: &Path,
    metadata: HashMap<String, String>,
    tensors: &[Planned],
    values: &mut Values<'_>,
) -> Result<()> {
    let io = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut order: Vec<&Planned> = tensors.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let mut infos = Vec::with_capacity(order.len());
    let mut offset = 0usize;
    for t in &order {
        let bytes = elements(&t.shape)
            .and_then(|n| n.checked_mul(4))
            .and_then(|bytes| Some((bytes, offset.checked_add(bytes)?)))
            .ok_or_else(|| unfit(format!("tensor {} is too large", t.name)))?;
        infos.push((
            t.name.clone(),
            TensorInfo {
                dtype: Dtype::F32,
                shape: t.shape.clone(),
                data_offsets: (offset, bytes.1),
            },
        ));
        offset = bytes.1;
    }
    let header = Metadata::new(Some(metadata), infos).map_err(|e| unfit(format!("header: {e}")))?;
    let mut header = serde_json::to_vec(&header).map_err(|e| unfit(format!("header: {e}")))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for t in order {
        let mut written = 0usize;
        values(t, &mut |piece: &[f32]| {
            written += piece.len();
            out.write_all(&le_bytes(piece)).map_err(io)
        })?;
        if elements(&t.shape) != Some(written) {
            return Err(unfit(format!(
                "tensor {}: shape {:?} does not hold its {written} values",
                t.name, t.shape
            )));
        }
    }
    Ok(())
}

/// [`write_tensors`] to the file `path`, atomically (see [`write_atomic`]): a failure
/// part-way, of the disk or of `values`, leaves the file as it was.
pub(crate) fn write_file(
    path: &Path,
    metadata: HashMap<String, String>,
    tensors: &[Planned],
    values: &mut Values<'_>,
) -> Result<()> {
    // The error that stopped the write, returned instead of the I/O error that carried
    // it out of the temporary file's writer.
    let mut failed = None;
    let result = write_atomic_with(path, |tmp| {
        let mut file = BufWriter::new(std::fs::File::create(tmp)?);
        match write_tensors(&mut file, path, metadata, tensors, values) {
            Ok(()) => file.flush(),
            Err(e) => {
                failed = Some(e);
                Err(std::io::Error::other("the checkpoint could not be written"))
            }
        }
    });
    match failed {
        Some(e) => Err(with_path(e, path)),
        None => result,
    }
}

/// `values` as little-endian bytes: lent as they are on a little-endian machine.
fn le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// `e` naming `path` if it is a checkpoint error without one.
pub(crate) fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Checkpoint { reason, .. } => Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    }
}

/// Writes `bytes` to `path` so that `path` holds either its old content or all of
/// `bytes`, never a mix: temporary file in the same directory, fsync, rename, then
/// fsync of the directory so the rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(bytes)
    })
}

/// [`write_atomic`] for content that `write` puts into the file at the path it is given
/// (created by `write`), so that it can be streamed rather than built in memory first.
fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    let io = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: "not a file name".into(),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        write(&tmp)?;
        // fsync flushes the file's data whichever descriptor wrote it (opened for
        // writing, which Windows needs to flush).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp)?
            .sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Best effort: a stale temporary file is harmless, the target is untouched.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Directory fsync is not supported everywhere (e.g. Windows); the data is safe anyway.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
