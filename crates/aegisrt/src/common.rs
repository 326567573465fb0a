//! Helpers shared by the subcommands: loading, devices, inputs, summaries, percentiles.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aegis_cuda::{Device, HostDeviceOptions};
use aegis_exec::{DType, ExecutionGraph, HostTensor, LoadOptions};

use crate::{BackendArg, CliResult, ModelArgs};

/// Load options from `--shape NAME=DIMS` flags.
pub fn load_options(shapes: &[String]) -> CliResult<LoadOptions> {
    let mut o = LoadOptions::default();
    for s in shapes {
        let (name, dims) = aegis_exec::parse_input_shape(s).map_err(|e| match e {
            // Parsed before any model is known: name the flag instead.
            aegis_exec::ExecError::BadShapeOverride { reason, .. } => {
                format!("--shape {reason} (expected NAME=D0,D1,..., e.g. x=1,3,224,224)")
            }
            e => e.to_string(),
        })?;
        o = o.with_input_shape(name, dims);
    }
    Ok(o)
}

/// Loads the model file into a graph.
pub fn load_graph(model: &ModelArgs) -> CliResult<Arc<ExecutionGraph>> {
    load_with_shapes(model, &model.shapes)?.map_err(|e| cli_message(&e))
}

/// Loads the model file with `--shape` flags `shapes`: usage errors outside, load errors
/// inside (typed, so a caller can react to one).
fn load_with_shapes(
    model: &ModelArgs,
    shapes: &[String],
) -> CliResult<Result<Arc<ExecutionGraph>, aegis_exec::ExecError>> {
    if !model.model.exists() {
        return Err(format!(
            "model file {} does not exist",
            model.model.display()
        ));
    }
    let opts = load_options(shapes)?;
    Ok(ExecutionGraph::load(&model.model, &opts).map(Arc::new))
}

/// Loads the model file, taking an open input dimension from the tensor given for that
/// input with `--input NAME=FILE` when no `--shape` fixes it: `run model.onnx --input
/// x=batch_of_8.npy` needs no `--shape x=8,...` that could only repeat the file's shape.
/// Fixed dimensions are still checked against the file by [`inputs_for`].
pub fn load_graph_for_inputs(
    model: &ModelArgs,
    given: &[String],
) -> CliResult<Arc<ExecutionGraph>> {
    let open = match load_with_shapes(model, &model.shapes)? {
        Ok(g) => return Ok(g),
        Err(e @ aegis_exec::ExecError::OpenDimension { .. }) => e,
        Err(e) => return Err(cli_message(&e)),
    };
    let mut shapes = model.shapes.clone();
    for g in given {
        let Some((name, file)) = g.split_once('=') else {
            continue;
        };
        let fixed = model
            .shapes
            .iter()
            .any(|s| s.rsplit_once('=').is_some_and(|(n, _)| n.trim() == name));
        if !fixed {
            let tensor =
                HostTensor::read(Path::new(file)).map_err(|e| format!("--input {name}: {e}"))?;
            let dims: Vec<String> = tensor.shape.iter().map(ToString::to_string).collect();
            shapes.push(format!("{name}={}", dims.join(",")));
        }
    }
    if shapes.len() == model.shapes.len() {
        // No file to take a shape from: the flag is the fix.
        return Err(cli_message(&open));
    }
    load_with_shapes(model, &shapes)?.map_err(|e| cli_message(&e))
}

/// A load error in the command line's terms: an open dimension is fixed with `--shape`.
pub fn cli_message(e: &aegis_exec::ExecError) -> String {
    match e {
        aegis_exec::ExecError::OpenDimension {
            model,
            input,
            dim,
            symbol,
        } => format!(
            "model {model}: input '{input}' has open dimension {dim} ('{symbol}'); fix it with --shape {input}=D0,D1,... (e.g. --shape {input}=1,3,224,224)"
        ),
        e => e.to_string(),
    }
}

/// The device for `--backend`.
pub fn device(backend: BackendArg, threads: usize) -> CliResult<Device> {
    match backend {
        BackendArg::Host => Ok(Device::host_with(HostDeviceOptions {
            threads,
            ..HostDeviceOptions::default()
        })),
        BackendArg::Cuda => Device::cuda(0).map_err(|e| e.to_string()),
    }
}

/// Default kernel threads: all cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A small deterministic generator (SplitMix64), so generated inputs are the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A generated input for `info`: floats (f32, f16, bf16, f64) uniform in [0, 1), integers zero, booleans
/// false.
pub fn generate_input(dtype: DType, shape: &[usize], byte_size: u64, rng: &mut Rng) -> HostTensor {
    if dtype == DType::F32 {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.unit() as f32).collect();
        if let Ok(t) = HostTensor::from_f32(shape.to_vec(), &data) {
            return t;
        }
    }
    // 16-bit floats: `bits` rounds a value in [0, 1) to one, kept below 1.0 (0x3bff and
    // 0x3f7f are the largest f16 / bf16 below 1).
    let mut sixteen = |bits: fn(f64) -> [u8; 2]| HostTensor {
        dtype,
        shape: shape.to_vec(),
        data: (0..shape.iter().product::<usize>())
            .flat_map(|_| bits(rng.unit()))
            .collect(),
    };
    match dtype {
        DType::F16 => {
            return sixteen(|v| {
                half::f16::from_f64(v)
                    .min(half::f16::from_bits(0x3bff))
                    .to_le_bytes()
            })
        }
        DType::BF16 => {
            return sixteen(|v| {
                half::bf16::from_f64(v)
                    .min(half::bf16::from_bits(0x3f7f))
                    .to_le_bytes()
            })
        }
        DType::F64 => {
            return HostTensor {
                dtype,
                shape: shape.to_vec(),
                data: (0..shape.iter().product::<usize>())
                    .flat_map(|_| rng.unit().to_le_bytes())
                    .collect(),
            }
        }
        _ => {}
    }
    HostTensor {
        dtype,
        shape: shape.to_vec(),
        data: vec![0; usize::try_from(byte_size).unwrap_or(0)],
    }
}

/// Every input of `graph`, from `--input NAME=FILE` flags or generated with `seed`. Returns
/// the tensors and, for each generated one, a line saying so.
pub fn inputs_for(
    graph: &ExecutionGraph,
    given: &[String],
    seed: u64,
) -> CliResult<(Vec<HostTensor>, Vec<String>)> {
    let mut files = std::collections::BTreeMap::new();
    for g in given {
        let (name, file) = g
            .split_once('=')
            .ok_or_else(|| format!("--input `{g}`: expected NAME=FILE"))?;
        files.insert(name.to_owned(), file.to_owned());
    }
    let names: Vec<String> = graph
        .inputs()
        .iter()
        .map(|&t| graph.tensor(t).name.clone())
        .collect();
    if let Some(unknown) = files.keys().find(|k| !names.contains(k)) {
        return Err(format!(
            "--input {unknown}: the model has no such input (inputs: {})",
            names.join(", ")
        ));
    }
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for &t in graph.inputs() {
        let info = graph.tensor(t);
        match files.get(&info.name) {
            Some(file) => {
                let mut tensor = HostTensor::read(Path::new(file)).map_err(|e| e.to_string())?;
                if tensor.dtype == DType::F64 && info.dtype == DType::F32 {
                    // numpy's default float is f64: such a file feeds an f32 input, rounded
                    // to nearest, and the output says so.
                    tensor = narrow_f64(tensor);
                    notes.push(format!(
                        "input {}: f64 values of {file} rounded to f32",
                        info.name
                    ));
                }
                if tensor.shape != info.shape || tensor.dtype != info.dtype {
                    return Err(format!(
                        "input {} from {file}: {} {:?}, the model expects {} {:?}",
                        info.name, tensor.dtype, tensor.shape, info.dtype, info.shape
                    ));
                }
                out.push(tensor);
            }
            None => {
                let what = if matches!(
                    info.dtype,
                    DType::F32 | DType::F16 | DType::BF16 | DType::F64
                ) {
                    format!("uniform [0,1), seed {seed}")
                } else {
                    "zeros".to_owned()
                };
                notes.push(format!(
                    "input {}: generated {} {:?} ({what})",
                    info.name, info.dtype, info.shape
                ));
                out.push(generate_input(
                    info.dtype,
                    &info.shape,
                    info.byte_size,
                    &mut rng,
                ));
            }
        }
    }
    Ok((out, notes))
}

/// An f64 tensor rounded to f32.
fn narrow_f64(t: HostTensor) -> HostTensor {
    HostTensor {
        dtype: DType::F32,
        data: t
            .data
            .chunks_exact(8)
            .flat_map(|c| {
                let x = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                (x as f32).to_le_bytes()
            })
            .collect(),
        shape: t.shape,
    }
}

/// `min/max/mean` and the first values of a tensor, one line.
pub fn summarize(t: &HostTensor) -> String {
    let values = t.to_f64();
    let Some(v) = values.filter(|v| !v.is_empty()) else {
        return format!("{} bytes", t.data.len());
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let first: Vec<String> = v.iter().take(5).map(|x| format!("{x:.6}")).collect();
    let argmax = v
        .iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |a, (i, &x)| if x > a.1 { (i, x) } else { a },
        )
        .0;
    format!(
        "min {min:.6}  max {max:.6}  mean {mean:.6}  argmax {argmax}  first [{}{}]",
        first.join(", "),
        if v.len() > 5 { ", ..." } else { "" }
    )
}

/// The `q`-quantile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with 3 decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// A file-name-safe version of a tensor name.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// True when stderr is a terminal (progress bars are drawn only then).
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_16bit_float_inputs_stay_below_one() {
        for dt in [DType::F16, DType::BF16] {
            let t = generate_input(dt, &[4096], 8192, &mut Rng::new(1));
            assert_eq!(t.dtype, dt);
            let v = t.to_f32().unwrap();
            assert_eq!(v.len(), 4096);
            assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)), "{dt}");
            assert!(
                v.iter().any(|&x| x > 0.99),
                "{dt}: the top of the range is reached"
            );
        }
    }

    #[test]
    fn eight_bit_outputs_are_summarized_by_value() {
        let t = |dtype, data: Vec<u8>| HostTensor {
            dtype,
            shape: vec![data.len()],
            data,
        };
        let s = summarize(&t(DType::U8, vec![1, 250, 3]));
        assert!(s.starts_with("min 1.000000  max 250.000000"), "{s}");
        assert!(s.contains("argmax 1"), "{s}");
        // 0xff is -1 as i8.
        let s = summarize(&t(DType::I8, vec![0xff, 5, 0x80]));
        assert!(s.starts_with("min -128.000000  max 5.000000"), "{s}");
    }
}
