//! Deterministic mutation smoke test (cargo-fuzz needs nightly, which CI lacks): each shared
//! model's bytes get seeded byte flips, splices and truncations; loading must return `Ok` or a
//! typed `Err`, never panic. The number of executions is printed (`--nocapture`).
//!
//! The big-weight models are skipped: their bytes are almost entirely float payload, so
//! mutations there exercise nothing but copying, and loading them costs seconds.

use std::path::Path;

use aegis_exec::{ExecutionGraph, LoadOptions};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.below(6) {
        0 => {
            let n = rng.below(b.len());
            b.truncate(n);
        }
        1 | 2 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
        3 => {
            // Interesting varint values (0, 1, -1 as varint, large) at a random place.
            let i = rng.below(b.len());
            let vals: [&[u8]; 4] = [&[0], &[1], &[0xff; 10], &[0x80, 0x80, 0x80, 0x80, 0x08]];
            let v = vals[rng.below(4)];
            let end = (i + v.len()).min(b.len());
            b[i..end].copy_from_slice(&v[..end - i]);
        }
        4 => {
            // Duplicate a chunk (repeats fields, confuses lengths).
            let i = rng.below(b.len());
            let len = rng.below(64).min(b.len() - i);
            let chunk = b[i..i + len].to_vec();
            let at = rng.below(b.len());
            b.splice(at..at, chunk);
        }
        _ => {
            let i = rng.below(b.len());
            let len = rng.below(32).min(b.len() - i);
            b.drain(i..i + len);
        }
    }
    b
}

#[test]
fn mutated_models_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    let small = [
        "ppocr-mobile-v2-cls",
        "tv-transformer_encoder_2l",
        "light-squeezenet",
        "light-shufflenet",
        "light-inception_v1",
        "light-densenet121",
    ];
    let mut total = 0usize;
    let mut ok = 0usize;
    for name in small {
        let bytes = std::fs::read(dir.join(name).join("model.onnx")).unwrap();
        let opts = if name == "ppocr-mobile-v2-cls" {
            LoadOptions::default().with_input_shape("x", vec![1, 3, 48, 192])
        } else {
            LoadOptions::default()
        };
        // Planning every survivor through the reordering search would dominate the run
        // time: one mutation in eight takes the default (reordering) path.
        let fast = LoadOptions {
            memory_aware_order: false,
            ..opts.clone()
        };
        let iters = if bytes.len() > 200_000 { 300 } else { 1200 };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ bytes.len() as u64);
        for i in 0..iters {
            let m = mutate(&mut rng, &bytes);
            let o = if i % 8 == 0 { &opts } else { &fast };
            let r = std::panic::catch_unwind(|| ExecutionGraph::from_bytes(&m, name, o).is_ok());
            match r {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(_) => {
                    let path =
                        std::env::temp_dir().join(format!("aegis-mutation-crash-{name}.onnx"));
                    std::fs::write(&path, &m).unwrap();
                    panic!(
                        "loader panicked on a mutation of {name}; saved to {}",
                        path.display()
                    );
                }
            }
            total += 1;
        }
    }
    eprintln!(
        "mutation smoke: {total} executions, {ok} loaded, {} typed errors",
        total - ok
    );
    assert!(total >= 4000);
}
