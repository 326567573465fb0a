//! Host tensors: what callers hand to and get back from an inference, with `.npy` and ONNX
//! `TensorProto` (`.pb`) input/output.

use std::path::Path;

use prost::Message;

use crate::graph::{DType, TensorData};
use crate::loader::tensor::{decode_tensor, ExternalBase};
use crate::ExecError;

/// A dense, row-major tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian element bytes (`numel * dtype size`).
    pub data: Vec<u8>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ExecError {
    ExecError::TensorFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl HostTensor {
    /// A float tensor; fails when `data` does not hold `prod(shape)` elements.
    pub fn from_f32(shape: Vec<usize>, data: &[f32]) -> Result<Self, ExecError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ExecError::InputMismatch {
                input: "<f32 tensor>".into(),
                reason: format!("shape {shape:?} needs {n} elements, got {}", data.len()),
            });
        }
        Ok(Self {
            dtype: DType::F32,
            shape,
            data: bytemuck::cast_slice(data).to_vec(),
        })
    }

    /// From a constant's value.
    pub fn from_data(shape: Vec<usize>, data: &TensorData) -> Self {
        Self {
            dtype: data.dtype(),
            shape,
            data: data.as_bytes().to_vec(),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the data in bytes.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// The elements as f32 (copied: the byte buffer carries no alignment guarantee); f16 and bf16
    /// elements are widened, which is exact.
    pub fn to_f32(&self) -> Result<Vec<f32>, ExecError> {
        let bits = || self.data.chunks_exact(2).map(|c| [c[0], c[1]]);
        match self.dtype {
            DType::F16 => {
                return Ok(bits()
                    .map(|b| half::f16::from_le_bytes(b).to_f32())
                    .collect())
            }
            DType::BF16 => {
                return Ok(bits()
                    .map(|b| half::bf16::from_le_bytes(b).to_f32())
                    .collect())
            }
            _ => {}
        }
        if self.dtype != DType::F32 {
            return Err(ExecError::InputMismatch {
                input: "<tensor>".into(),
                reason: format!("expected f32, found {}", self.dtype),
            });
        }
        Ok(self
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Every element as f64, for display and comparison: exact for every type but i64/u64
    /// beyond 2^53 (rounded to nearest). `None` when the bytes do not fill whole elements.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        fn each<const N: usize>(d: &[u8], f: impl Fn([u8; N]) -> f64) -> Option<Vec<f64>> {
            if !d.len().is_multiple_of(N) {
                return None;
            }
            Some(
                d.chunks_exact(N)
                    .map(|c| f(c.try_into().unwrap_or([0; N])))
                    .collect(),
            )
        }
        let d = &self.data;
        match self.dtype {
            DType::F32 => each(d, |b| f64::from(f32::from_le_bytes(b))),
            DType::F64 => each(d, f64::from_le_bytes),
            DType::F16 => each(d, |b| f64::from(half::f16::from_le_bytes(b))),
            DType::BF16 => each(d, |b| f64::from(half::bf16::from_le_bytes(b))),
            DType::I64 => each(d, |b| i64::from_le_bytes(b) as f64),
            DType::I32 => each(d, |b| f64::from(i32::from_le_bytes(b))),
            DType::I16 => each(d, |b| f64::from(i16::from_le_bytes(b))),
            DType::I8 => each(d, |b: [u8; 1]| f64::from(b[0] as i8)),
            DType::U64 => each(d, |b| u64::from_le_bytes(b) as f64),
            DType::U32 => each(d, |b| f64::from(u32::from_le_bytes(b))),
            DType::U16 => each(d, |b| f64::from(u16::from_le_bytes(b))),
            DType::U8 | DType::Bool => each(d, |b: [u8; 1]| f64::from(b[0])),
            DType::Narrow(n) => each(d, |b: [u8; 1]| f64::from(n.decode(b[0]))),
        }
    }

    /// Reads a `.npy` (v1–v3, little-endian f2/f4/f8/i1/i2/i4/i8/u1/u2/u4/u8/b1, C order) or an ONNX
    /// `TensorProto` `.pb` file, by extension.
    pub fn read(path: &Path) -> Result<Self, ExecError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Self::read_npy(path),
            Some("pb") => Self::read_pb(path),
            _ => Err(io_err(
                path,
                "unknown tensor file type (expected .npy or .pb)",
            )),
        }
    }

    /// Reads an ONNX `TensorProto` file.
    pub fn read_pb(path: &Path) -> Result<Self, ExecError> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let proto = tract_onnx::pb::TensorProto::decode(bytes.as_slice())
            .map_err(|e| io_err(path, format!("not a TensorProto: {e}")))?;
        let (shape, data) = decode_tensor(
            &path.display().to_string(),
            &proto,
            ExternalBase { dir: None },
        )?;
        Ok(Self::from_data(shape, &data))
    }

    /// Reads a `.npy` file.
    pub fn read_npy(path: &Path) -> Result<Self, ExecError> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        Self::parse_npy(&bytes).map_err(|r| io_err(path, r))
    }

    /// Parses `.npy` bytes.
    pub fn parse_npy(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err("not a .npy file (bad magic)".into());
        }
        let major = bytes[6];
        let (hlen, start): (usize, usize) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            v => return Err(format!("unsupported .npy version {v}")),
        };
        let end = start
            .checked_add(hlen)
            .filter(|e| *e <= bytes.len())
            .ok_or("truncated header")?;
        let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
        let field = |key: &str| -> Result<&str, String> {
            let i = header.find(key).ok_or(format!("header lacks {key}"))?;
            Ok(header[i + key.len()..].trim_start_matches([' ', ':', '\'']))
        };
        let descr = field("'descr'")?;
        let descr = &descr[..descr.find('\'').ok_or("bad descr")?];
        if field("'fortran_order'")?.starts_with("True") {
            return Err("Fortran-order arrays are not supported".into());
        }
        let shape_s = field("'shape'")?;
        let open = shape_s.find('(').ok_or("bad shape")?;
        let close = shape_s.find(')').ok_or("bad shape")?;
        let shape: Vec<usize> = shape_s[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| format!("bad dimension {s:?}"))
            })
            .collect::<Result<_, _>>()?;
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("shape overflows")?;
        let body = &bytes[end..];
        let take = |size: usize| -> Result<&[u8], String> {
            let n = numel.checked_mul(size).ok_or("size overflows")?;
            body.get(..n)
                .ok_or_else(|| format!("truncated data: need {n} bytes, have {}", body.len()))
        };
        let (dtype, data) = match descr {
            "<f4" => (DType::F32, take(4)?.to_vec()),
            "<f8" => (DType::F64, take(8)?.to_vec()),
            "<i2" => (DType::I16, take(2)?.to_vec()),
            "<u2" => (DType::U16, take(2)?.to_vec()),
            "<u4" => (DType::U32, take(4)?.to_vec()),
            "<u8" => (DType::U64, take(8)?.to_vec()),
            "<f2" => (DType::F16, take(2)?.to_vec()),
            "<i8" => (DType::I64, take(8)?.to_vec()),
            "<i4" => (DType::I32, take(4)?.to_vec()),
            "|b1" => (DType::Bool, take(1)?.to_vec()),
            "|u1" => (DType::U8, take(1)?.to_vec()),
            "|i1" => (DType::I8, take(1)?.to_vec()),
            other => return Err(format!("unsupported dtype {other}")),
        };
        Ok(Self { dtype, shape, data })
    }

    /// Writes a version-1 `.npy` file.
    pub fn write_npy(&self, path: &Path) -> Result<(), ExecError> {
        std::fs::write(path, self.to_npy()).map_err(|e| io_err(path, e))
    }

    /// Encodes as version-1 `.npy` bytes (bf16 and the narrow types, which numpy lacks, widened to f32).
    pub fn to_npy(&self) -> Vec<u8> {
        let descr = match self.dtype {
            DType::F32 => "<f4",
            DType::I64 => "<i8",
            DType::I32 => "<i4",
            DType::Bool => "|b1",
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::F16 => "<f2",
            // numpy has no bfloat16: written widened to f32, which is exact.
            DType::BF16 => "<f4",
            DType::F64 => "<f8",
            DType::I16 => "<i2",
            DType::U16 => "<u2",
            DType::U32 => "<u4",
            DType::U64 => "<u8",
            // Neither has numpy the narrow types: their exact values, as f32.
            DType::Narrow(_) => "<f4",
        };
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        // Pad so the data starts on a 64-byte boundary, as numpy does.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        match self.dtype {
            DType::BF16 => out.extend(self.data.chunks_exact(2).flat_map(|c| {
                half::bf16::from_le_bytes([c[0], c[1]])
                    .to_f32()
                    .to_le_bytes()
            })),
            DType::Narrow(n) => {
                out.extend(self.data.iter().flat_map(|&b| n.decode(b).to_le_bytes()))
            }
            _ => out.extend(&self.data),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let t = HostTensor::from_f32(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let back = HostTensor::parse_npy(&t.to_npy()).unwrap();
        assert_eq!(back, t);
        let v = HostTensor {
            dtype: DType::I64,
            shape: vec![3],
            data: bytemuck::cast_slice(&[1i64, -2, 3]).to_vec(),
        };
        assert_eq!(HostTensor::parse_npy(&v.to_npy()).unwrap(), v);
        // f16 keeps its bits through .npy ('<f2') and widens exactly.
        let h = HostTensor {
            dtype: DType::F16,
            shape: vec![3],
            data: bytemuck::cast_slice(&[0x3c00u16, 0xc100, 0x7e00]).to_vec(),
        };
        let back = HostTensor::parse_npy(&h.to_npy()).unwrap();
        assert_eq!(back, h);
        let f = back.to_f32().unwrap();
        assert_eq!(&f[..2], &[1.0, -2.5]);
        assert!(f[2].is_nan());
        // f64 ('<f8') stays f64, bit for bit.
        let d = HostTensor {
            dtype: DType::F64,
            shape: vec![2],
            data: bytemuck::cast_slice(&[0.1f64, -1e300]).to_vec(),
        };
        assert!(d.to_npy().windows(4).any(|w| w == b"<f8'"));
        assert_eq!(HostTensor::parse_npy(&d.to_npy()).unwrap(), d);
        assert_eq!(d.to_f64().unwrap(), vec![0.1, -1e300]);
        assert_eq!(h.to_f64().unwrap()[..2], [1.0, -2.5]);
    }

    #[test]
    fn npy_errors_are_typed() {
        assert!(HostTensor::parse_npy(b"hello").is_err());
        let mut b = HostTensor::from_f32(vec![4], &[1.0; 4]).unwrap().to_npy();
        b.truncate(b.len() - 3);
        assert!(HostTensor::parse_npy(&b).unwrap_err().contains("truncated"));
        assert!(HostTensor::from_f32(vec![2, 2], &[1.0]).is_err());
    }
}
