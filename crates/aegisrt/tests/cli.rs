//! The built `aegisrt` binary on small shared models: exit codes, one-line errors, the
//! trace file parses and holds what it promises, the SVG is well-formed.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aegisrt"))
}

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn model(name: &str) -> String {
    models()
        .join(name)
        .join("model.onnx")
        .to_string_lossy()
        .into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aegisrt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A failure is exactly one `error:` line, no panic, no backtrace.
fn assert_one_line_error(o: &Output, needle: &str) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn run_prints_outputs_and_writes_a_trace() {
    let trace = tmp("run.trace.json");
    let out_dir = tmp("outs");
    let input = models().join("ppocr-mobile-v2-cls/input_0.npy");
    let o = run(&[
        "run",
        &model("ppocr-mobile-v2-cls"),
        "--shape",
        "x=1,3,48,192",
        "--input",
        &format!("x={}", input.display()),
        "--threads",
        "2",
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("save_infer_model/scale_0.tmp_1: f32 [1, 2]"),
        "{stdout}"
    );
    assert!(!stdout.contains("generated"), "the input was given");
    let written = out_dir.join("save_infer_model_scale_0.tmp_1.npy");
    let t = aegis_exec::HostTensor::read_npy(&written).unwrap();
    let reference =
        aegis_exec::HostTensor::read_npy(&models().join("ppocr-mobile-v2-cls/output_0.npy"))
            .unwrap();
    let (a, b) = (t.to_f32().unwrap(), reference.to_f32().unwrap());
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3));

    let events: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().any(f);
    assert!(has(&|e| e["name"] == "aegisrt.run"), "host span");
    assert!(
        has(&|e| e["pid"] == 2
            && e["ph"] == "X"
            && e["cat"] == "device"
            && e["dur"].as_f64() > Some(0.0)),
        "device timeline"
    );
    assert!(
        has(&|e| e["cat"] == "decision"
            && e["args"]["action"] == "dispatch"
            && e["args"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("fifo"))),
        "scheduling decision with its reason"
    );
}

#[test]
fn run_takes_open_dimensions_from_the_given_input() {
    // ppocr's `x` is [?, 3, 48, ?]: the file fixes both, no `--shape` needed.
    let input = models().join("ppocr-mobile-v2-cls/input_0.npy");
    let given = format!("x={}", input.display());
    let o = run(&["run", &model("ppocr-mobile-v2-cls"), "--input", &given]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("save_infer_model/scale_0.tmp_1: f32 [1, 2]"),
        "{stdout}"
    );
    // A `--shape` still wins, and a file that disagrees with it is named.
    let o = run(&[
        "run",
        &model("ppocr-mobile-v2-cls"),
        "--shape",
        "x=2,3,48,192",
        "--input",
        &given,
    ]);
    assert_one_line_error(&o, "the model expects f32 [2, 3, 48, 192]");
    // Without a file to read, the error still points at `--shape`.
    let o = run(&["run", &model("ppocr-mobile-v2-cls")]);
    assert_one_line_error(&o, "fix it with --shape x=");
}

#[test]
fn an_f64_input_file_feeds_an_f32_input_rounded_and_says_so() {
    // numpy's default float is f64: the same values saved as f64 give the same outputs as
    // the f32 file (each f32 value is exact in f64), with a line naming the rounding.
    let f32_file = models().join("ppocr-mobile-v2-cls/input_0.npy");
    let x = aegis_exec::HostTensor::read_npy(&f32_file).unwrap();
    let wide = aegis_exec::HostTensor {
        dtype: aegis_exec::DType::F64,
        shape: x.shape.clone(),
        data: x
            .to_f32()
            .unwrap()
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect(),
    };
    let dir = tmp("f64-input");
    std::fs::create_dir_all(&dir).unwrap();
    let f64_file = dir.join("x64.npy");
    wide.write_npy(&f64_file).unwrap();
    let outputs = |file: &std::path::Path, sub: &str| {
        let out_dir = dir.join(sub);
        let o = run(&[
            "run",
            &model("ppocr-mobile-v2-cls"),
            "--input",
            &format!("x={}", file.display()),
            "--output-dir",
            out_dir.to_str().unwrap(),
        ]);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{stdout}{stderr}");
        let t =
            aegis_exec::HostTensor::read_npy(&out_dir.join("save_infer_model_scale_0.tmp_1.npy"))
                .unwrap();
        (t, format!("{stdout}{stderr}"))
    };
    let (narrow, said) = outputs(&f32_file, "a");
    assert!(!said.contains("rounded to f32"), "{said}");
    let (wide_out, said) = outputs(&f64_file, "b");
    assert!(said.contains("input x: f64 values of"), "{said}");
    assert!(said.contains("rounded to f32"), "{said}");
    assert_eq!(wide_out, narrow);
}

#[test]
fn a_model_directory_stands_for_its_model_onnx() {
    let dir = models().join("tv-squeezenet1_1");
    let o = run(&["check", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("verdict: RUNNABLE"));
    // A directory without one is still a one-line error, not a panic.
    let empty = tmp("no-model-here");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&["run", empty.to_str().unwrap()]);
    assert_one_line_error(&o, "no-model-here");
}

#[test]
fn run_generates_inputs_deterministically() {
    let a = run(&["run", &model("tv-squeezenet1_1"), "--threads", "2"]);
    let b = run(&[
        "run",
        &model("tv-squeezenet1_1"),
        "--threads",
        "2",
        "--seed",
        "0",
    ]);
    let (sa, _) = text(&a);
    let (sb, _) = text(&b);
    assert!(a.status.success());
    assert!(sa.contains("generated f32 [1, 3, 224, 224]"), "{sa}");
    let summary = |s: &str| s.lines().find(|l| l.contains("min ")).unwrap().to_owned();
    assert_eq!(summary(&sa), summary(&sb));
}

#[test]
fn errors_are_one_line_with_exit_1() {
    assert_one_line_error(&run(&["run", "/no/such/model.onnx"]), "does not exist");
    let bad = tmp("bad.onnx");
    std::fs::write(&bad, b"this is not a protobuf").unwrap();
    assert_one_line_error(
        &run(&["run", bad.to_str().unwrap()]),
        "not a valid ONNX model",
    );
    assert_one_line_error(
        &run(&["run", &model("tv-squeezenet1_1"), "--input", "nope=x.npy"]),
        "no such input",
    );
    assert_one_line_error(
        &run(&["fit", "--device-memory", "lots", &model("tv-squeezenet1_1")]),
        "not a size",
    );
    assert_one_line_error(
        &run(&["serve-sim", "/no/scenario.json"]),
        "cannot read scenario",
    );
    // Bad --shape: not NAME=DIMS, a dimension that is not a number.
    let sq = model("tv-squeezenet1_1");
    assert_one_line_error(&run(&["run", &sq, "--shape", "input"]), "input");
    assert_one_line_error(
        &run(&["plan", &sq, "--shape", "input=1,x,224,224"]),
        "--shape 'x' in 'input=1,x,224,224' is not a dimension",
    );
    // Bad --input: no `=`, a missing file, a file that is not a tensor, the wrong shape.
    assert_one_line_error(
        &run(&["run", &sq, "--input", "input"]),
        "expected NAME=FILE",
    );
    assert_one_line_error(
        &run(&["run", &sq, "--input", "input=/no/such/input.npy"]),
        "/no/such/input.npy",
    );
    assert_one_line_error(
        &run(&["run", &sq, "--input", &format!("input={}", bad.display())]),
        "bad.onnx",
    );
    let ppocr_input = models().join("ppocr-mobile-v2-cls/input_0.npy");
    assert_one_line_error(
        &run(&[
            "run",
            &sq,
            "--input",
            &format!("input={}", ppocr_input.display()),
        ]),
        "the model expects",
    );
    // A malformed model through the other subcommands too.
    for cmd in ["plan", "check", "bench"] {
        let o = run(&[cmd, bad.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_ne!(o.status.code(), Some(0), "{cmd}: {err}");
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
    // Usage errors (clap's): exit 2, also one line.
    for args in [
        &["frobnicate"][..],
        &["run"][..],
        &["run", &sq, "--bogus"][..],
        &["bench", &sq, "--iterations", "many"][..],
        &["run", &sq, "--backend", "tpu"][..],
    ] {
        let o = run(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains("--help"), "{args:?}: {err}");
    }
    // --help is not an error.
    let help = run(&["run", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help).0.contains("--input"));
}

#[test]
fn bench_prints_plain_progress_lines_when_piped() {
    let o = run(&[
        "bench",
        &model("tv-squeezenet1_1"),
        "--iterations",
        "3",
        "--warmup",
        "0",
        "--threads",
        "2",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    // Not a terminal: no progress bar (no escape sequences, no carriage returns), plain lines.
    assert!(stderr.contains("3/3 iterations"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    for k in ["min", "median", "p90", "p99", "max", "throughput"] {
        assert!(stdout.contains(k), "{stdout}");
    }
}

#[test]
fn plan_svg_is_well_formed() {
    let svg = tmp("plan.svg");
    let o = run(&[
        "plan",
        &model("tv-squeezenet1_1"),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let (stdout, _) = text(&o);
    assert!(o.status.success());
    for k in ["naive sum", "peak", "lower bound"] {
        assert!(stdout.contains(k), "{stdout}");
    }
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    // Well-formed enough: every element is closed, quotes balance, text is escaped.
    let opens =
        s.matches("<rect").count() + s.matches("<line").count() + s.matches("<text").count();
    let closes =
        s.matches("/>").count() + s.matches("</rect>").count() + s.matches("</text>").count();
    assert_eq!(opens, closes, "unclosed elements");
    assert_eq!(s.matches('"').count() % 2, 0);
    assert!(s.matches("<rect").count() > 60, "one rectangle per tensor");
    assert!(s.contains("lower bound") && s.contains("time step") && s.contains("byte offset"));
    assert!(
        s.contains(">peak ") && s.contains(">lower bound "),
        "labelled lines"
    );
    // SqueezeNet 1.1's eight Concats have all their 16 parts planned in place, so the picture
    // draws their handovers.
    assert!(s.contains(", 16 parts in place:"), "{s}");
    // Tensor rectangles never overlap (in-place pairs and a Concat's parts hand over to the
    // next tensor mid-step): overlap would mean two live tensors in the same bytes.
    let rects: Vec<[f64; 4]> = s
        .lines()
        .filter(|l| l.starts_with("<rect") && l.contains("<title>"))
        .map(|l| {
            let attr = |k: &str| -> f64 {
                let start = l.find(&format!(" {k}=\"")).unwrap() + k.len() + 3;
                l[start..start + l[start..].find('"').unwrap()]
                    .parse()
                    .unwrap()
            };
            [attr("x"), attr("y"), attr("width"), attr("height")]
        })
        .collect();
    assert!(rects.len() > 60);
    let eps = 0.02;
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            let apart = a[0] + a[2] <= b[0] + eps
                || b[0] + b[2] <= a[0] + eps
                || a[1] + a[3] <= b[1] + eps
                || b[1] + b[3] <= a[1] + eps;
            assert!(apart, "overlapping tensors {a:?} {b:?}");
        }
    }
    let o = run(&["plan", &model("tv-squeezenet1_1"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["peak_bytes"].as_u64() >= v["lower_bound_bytes"].as_u64());
}

#[test]
fn check_and_fit_answer_with_their_exit_codes() {
    let ok = run(&[
        "check",
        &model("ppocr-mobile-v2-cls"),
        "--shape",
        "x=1,3,48,192",
        "--threads",
        "2",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
    assert!(text(&ok).0.contains("verdict: RUNNABLE"));
    // Without the shape the dynamic batch cannot be planned: not runnable, and why.
    let no = run(&["check", &model("ppocr-mobile-v2-cls")]);
    assert_eq!(no.status.code(), Some(3));
    assert!(text(&no).0.contains("open dimension"));
    assert!(text(&no).0.contains("--shape x="), "{:?}", text(&no));

    let sq = model("tv-squeezenet1_1");
    let fits = run(&[
        "fit",
        "--device-memory",
        "1GiB",
        &sq,
        &format!("{sq}:64MiB"),
    ]);
    assert_eq!(fits.status.code(), Some(0), "{:?}", text(&fits));
    assert!(text(&fits).0.contains("saves"));
    let over = run(&["fit", "--device-memory", "1GiB", &format!("{sq}:1MiB")]);
    assert_eq!(over.status.code(), Some(3));
    assert!(text(&over).0.contains("OVER BUDGET"));
    let small = run(&["fit", "--device-memory", "4MiB", "--json", &sq]);
    assert_eq!(small.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&small.stdout).unwrap();
    assert_eq!(v["fits"], false);
}

#[test]
fn serve_sim_loses_nothing_and_traces_decisions() {
    let scenario = tmp("scenario.json");
    let models = models();
    std::fs::write(
        &scenario,
        serde_json::json!({
            "threads": 2,
            "streams": 2,
            "policy": "edf",
            "duration_s": 2,
            "requests_per_model": 6,
            "seed": 1,
            "models": [
                { "name": "a", "path": models.join("ppocr-mobile-v2-cls/model.onnx"),
                  "shapes": ["x=1,3,48,192"], "rate_hz": 20, "priority": 8, "deadline_ms": 500 },
                { "name": "b", "path": models.join("tv-squeezenet1_1/model.onnx"),
                  "rate_hz": 5, "budget": "64MiB" }
            ]
        })
        .to_string(),
    )
    .unwrap();
    let trace = tmp("serve.trace.json");
    let o = run(&[
        "serve-sim",
        scenario.to_str().unwrap(),
        "--json",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lost"], 0);
    for m in v["models"].as_array().unwrap() {
        let n = |k: &str| m[k].as_u64().unwrap();
        assert!(n("submitted") >= 1);
        assert_eq!(
            n("submitted"),
            n("completed")
                + n("rejected")
                + n("refused")
                + n("cancelled")
                + n("failed")
                + n("lost")
        );
    }
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let device: Vec<_> = events.iter().filter(|e| e["cat"] == "device").collect();
    let decisions: Vec<_> = events.iter().filter(|e| e["cat"] == "decision").collect();
    assert!(!device.is_empty() && !decisions.is_empty());
    // Host spans (tracing-chrome) of the command itself.
    for span in ["aegisrt.serve-sim", "aegisrt.load", "aegisrt.collect"] {
        assert!(events.iter().any(|e| e["name"] == span), "host span {span}");
    }
    // Every scheduling decision with its reason; every accepted request dispatched once.
    assert!(decisions
        .iter()
        .all(|d| d["args"]["reason"].as_str().is_some_and(|r| !r.is_empty())));
    let dispatched = decisions
        .iter()
        .filter(|d| d["args"]["action"] == "dispatch")
        .count();
    let completed: u64 = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["completed"].as_u64().unwrap())
        .sum();
    assert!(dispatched as u64 >= completed);
    // The device timeline: one complete span per completed request, on its stream's track.
    assert_eq!(device.len() as u64, completed);
    assert!(device
        .iter()
        .all(|d| d["ph"] == "X" && d["pid"] == 2 && d["dur"].as_f64() > Some(0.0)));
    assert!(
        device.iter().all(|d| d["tid"].as_u64().unwrap() < 2),
        "two streams"
    );
}

#[test]
fn profile_reports_every_op_type_and_the_slowest_nodes() {
    let o = run(&[
        "profile",
        &model("tv-squeezenet1_1"),
        "--iterations",
        "2",
        "--threads",
        "1",
        "--top",
        "3",
        "--json",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let ops = v["ops"].as_array().expect("ops");
    // squeezenet: convolutions dominate, and the shares add up to the whole.
    assert_eq!(ops[0]["op"], "Conv", "{stdout}");
    let share: f64 = ops.iter().map(|o| o["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "{share}");
    let nodes: u64 = ops.iter().map(|o| o["nodes"].as_u64().unwrap()).sum();
    assert!(nodes >= 26, "{nodes}");
    let slowest = v["slowest"].as_array().expect("slowest");
    assert_eq!(slowest.len(), 3);
    // Each node names its shapes; a conv's include its filter, and its rate is worked out.
    for n in slowest.iter().filter(|n| n["op"] == "Conv") {
        let shapes = n["shapes"].as_str().expect("shapes");
        let (ins, out) = shapes.split_once(" -> ").expect("in -> out");
        assert_eq!(ins.split(", ").count(), 2, "data and filter: {shapes}");
        assert_eq!(out.split('x').count(), 4, "{shapes}");
        assert!(n["gflops"].as_f64().unwrap() > 0.0, "{n}");
    }
    assert!(slowest.iter().any(|n| n["op"] == "Conv"), "{stdout}");
    assert!(v["kernels_ms"].as_f64().unwrap() > 0.0);
    // Bad input: a typed one-line error.
    let bad = run(&["profile", &model("tv-squeezenet1_1"), "--iterations", "0"]);
    assert_one_line_error(&bad, "--iterations");
}
