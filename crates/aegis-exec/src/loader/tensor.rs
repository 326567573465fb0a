//! `TensorProto` → [`TensorData`], including external data files, with every size checked.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use tract_onnx::pb::TensorProto;

use crate::error::ExecError;
use crate::graph::{DType, TensorData};
use crate::kernels::{unpack, Narrow};

/// Largest single constant we materialise at load (the largest real weight we know of, VGG's
/// first FC layer, is 411 MB). Bigger constants come from corrupt models (a mutated
/// `ConstantOfShape` shape) and would otherwise abort the process on allocation.
pub(crate) const MAX_CONSTANT_BYTES: u64 = 1 << 30;

/// Total bytes of constants a load may create by folding (`ConstantOfShape`, `Range`,
/// evaluated nodes), for the same reason.
pub(crate) const MAX_FOLDED_BYTES: u64 = 4 << 30;

/// Element count of `shape`, checked.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Byte size of a tensor, checked.
pub(crate) fn checked_bytes(shape: &[usize], dtype: DType) -> Option<u64> {
    let n = checked_numel(shape)?;
    (n as u64).checked_mul(dtype.size_bytes())
}

/// Converts ONNX dims (i64) to a static shape.
pub(crate) fn dims_to_shape(dims: &[i64]) -> Option<Vec<usize>> {
    dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// Where external data is resolved from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExternalBase<'a> {
    pub(crate) dir: Option<&'a Path>,
}

/// Decodes an initializer or attribute tensor into `(shape, data)`.
pub(crate) fn decode_tensor(
    model: &str,
    t: &TensorProto,
    base: ExternalBase<'_>,
) -> Result<(Vec<usize>, TensorData), ExecError> {
    let name = if t.name.is_empty() {
        "<unnamed tensor>"
    } else {
        t.name.as_str()
    };
    let dtype = DType::from_onnx(t.data_type).ok_or_else(|| ExecError::UnsupportedDType {
        model: model.to_owned(),
        tensor: name.to_owned(),
        dtype: onnx_dtype_name(t.data_type),
    })?;
    let shape = dims_to_shape(&t.dims).ok_or_else(|| ExecError::InvalidNode {
        model: model.to_owned(),
        node: format!("tensor {name}"),
        reason: format!("negative dimension in {:?}", t.dims),
    })?;
    let overflow = || ExecError::Overflow {
        model: model.to_owned(),
        what: format!("constant '{name}' of shape {shape:?}"),
    };
    let numel = checked_numel(&shape).ok_or_else(overflow)?;
    let bytes = checked_bytes(&shape, dtype).ok_or_else(overflow)?;
    if bytes > MAX_CONSTANT_BYTES {
        return Err(overflow());
    }
    if t.segment.is_some() {
        return Err(ExecError::InvalidNode {
            model: model.to_owned(),
            node: format!("tensor {name}"),
            reason: "segmented tensors are not supported".into(),
        });
    }
    let bad_len = |got: usize| ExecError::ShapeMismatch {
        model: model.to_owned(),
        node: format!("tensor {name}"),
        reason: format!("shape {shape:?} needs {numel} {dtype} elements, the data holds {got}"),
    };
    let external = t.data_location == Some(1);
    // Bytes in the file: sub-byte types are packed there (two or four to a byte).
    let stored = match dtype {
        DType::Narrow(n) => (numel as u64 * n.bits() as u64).div_ceil(8),
        _ => bytes,
    };
    let raw: Option<Vec<u8>> = if external {
        Some(read_external(model, name, t, base, stored)?)
    } else if !t.raw_data.is_empty() {
        Some(t.raw_data.clone())
    } else {
        None
    };
    let data = if let Some(raw) = raw {
        if let DType::Narrow(
            n @ (Narrow::I4 | Narrow::U4 | Narrow::F4E2M1 | Narrow::I2 | Narrow::U2),
        ) = dtype
        {
            let v = unpack(n, &raw, numel).ok_or_else(|| bad_len(raw.len() * 8 / n.bits()))?;
            return Ok((shape, TensorData::Narrow(n, v)));
        }
        let elem = dtype.size_bytes() as usize;
        if raw.len() != numel.saturating_mul(elem) {
            return Err(bad_len(raw.len() / elem.max(1)));
        }
        match dtype {
            DType::F32 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::I32 => TensorData::I32(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::I64 => TensorData::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            DType::Bool => TensorData::Bool(raw.iter().map(|&b| u8::from(b != 0)).collect()),
            DType::U8 => TensorData::U8(raw),
            DType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
            DType::F16 => TensorData::F16(
                raw.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::BF16 => TensorData::BF16(
                raw.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::F64 => TensorData::F64(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            DType::I16 => TensorData::I16(
                raw.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::U16 => TensorData::U16(
                raw.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::U32 => TensorData::U32(
                raw.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::U64 => TensorData::U64(
                raw.chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            // 8-bit types: a byte per element (the packed ones were unpacked above).
            DType::Narrow(n) => TensorData::Narrow(n, raw),
        }
    } else {
        let data = match dtype {
            DType::F32 => TensorData::F32(t.float_data.clone()),
            DType::I32 => TensorData::I32(t.int32_data.clone()),
            DType::I64 => TensorData::I64(t.int64_data.clone()),
            DType::Bool => {
                TensorData::Bool(t.int32_data.iter().map(|&b| u8::from(b != 0)).collect())
            }
            // 8-bit types are stored one element per int32 when not in raw_data.
            DType::U8 => TensorData::U8(t.int32_data.iter().map(|&b| b as u8).collect()),
            DType::I8 => TensorData::I8(t.int32_data.iter().map(|&b| b as i8).collect()),
            // float16 bit patterns, one per int32 (the low 16 bits).
            DType::F16 => TensorData::F16(t.int32_data.iter().map(|&b| b as u16).collect()),
            DType::BF16 => TensorData::BF16(t.int32_data.iter().map(|&b| b as u16).collect()),
            DType::F64 => TensorData::F64(t.double_data.clone()),
            // 16-bit integers one per int32; uint32 and uint64 in uint64_data.
            DType::I16 => TensorData::I16(t.int32_data.iter().map(|&b| b as i16).collect()),
            DType::U16 => TensorData::U16(t.int32_data.iter().map(|&b| b as u16).collect()),
            DType::U32 => TensorData::U32(t.uint64_data.iter().map(|&b| b as u32).collect()),
            DType::U64 => TensorData::U64(t.uint64_data.clone()),
            // 8-bit floats one per int32; sub-byte types one packed byte per int32.
            DType::Narrow(n) => {
                let b: Vec<u8> = t.int32_data.iter().map(|&b| b as u8).collect();
                if n.bits() == 8 {
                    TensorData::Narrow(n, b)
                } else {
                    let v = unpack(n, &b, numel).ok_or_else(|| bad_len(b.len() * 8 / n.bits()))?;
                    TensorData::Narrow(n, v)
                }
            }
        };
        if data.len() != numel {
            return Err(bad_len(data.len()));
        }
        data
    };
    Ok((shape, data))
}

fn read_external(
    model: &str,
    name: &str,
    t: &TensorProto,
    base: ExternalBase<'_>,
    expected: u64,
) -> Result<Vec<u8>, ExecError> {
    let err = |reason: String| ExecError::ExternalData {
        model: model.to_owned(),
        tensor: name.to_owned(),
        reason,
    };
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.as_str()),
            "offset" => {
                offset = kv
                    .value
                    .parse()
                    .map_err(|_| err(format!("offset '{}' is not an integer", kv.value)))?
            }
            "length" => {
                length = Some(
                    kv.value
                        .parse::<u64>()
                        .map_err(|_| err(format!("length '{}' is not an integer", kv.value)))?,
                )
            }
            // "checksum" and unknown keys carry no information we need.
            _ => {}
        }
    }
    let location = location.ok_or_else(|| err("no 'location' key".into()))?;
    let rel = Path::new(location);
    // The location must stay inside the model's directory: no absolute paths, no `..`.
    if location.is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(err(format!(
            "location '{location}' is not a relative path inside the model's directory"
        )));
    }
    let dir = base.dir.ok_or_else(|| {
        err("the model was loaded from bytes without LoadOptions::external_data_dir".into())
    })?;
    let path = dir.join(rel);
    let mut file = File::open(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let file_len = file
        .metadata()
        .map_err(|e| err(format!("{}: {e}", path.display())))?
        .len();
    let length = match length {
        Some(l) => l,
        None => file_len.checked_sub(offset).ok_or_else(|| {
            err(format!(
                "offset {offset} is past the end of the {file_len}-byte file"
            ))
        })?,
    };
    let end = offset
        .checked_add(length)
        .ok_or_else(|| err(format!("offset {offset} + length {length} overflows")))?;
    if end > file_len {
        return Err(err(format!(
            "bytes {offset}..{end} lie outside the {file_len}-byte file {}",
            path.display()
        )));
    }
    if length != expected {
        return Err(err(format!(
            "length {length} does not match the {expected} bytes the shape needs"
        )));
    }
    let len = usize::try_from(length).map_err(|_| err("length exceeds address space".into()))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| err(format!("cannot allocate {len} bytes")))?;
    buf.resize(len, 0);
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    Ok(buf)
}

/// A readable name for an ONNX element type code.
pub(crate) fn onnx_dtype_name(code: i32) -> String {
    match tract_onnx::pb::tensor_proto::DataType::try_from(code) {
        Ok(d) => d.as_str_name().to_owned(),
        // Types newer than tract's copy of onnx.proto (onnx 1.19 and 1.20).
        Err(_) => match code {
            24 => "FLOAT8E8M0".to_owned(),
            25 => "UINT2".to_owned(),
            26 => "INT2".to_owned(),
            _ => format!("#{code}"),
        },
    }
}
