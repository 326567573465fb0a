//! An inference holds the host compute team awake from its enqueueing to its last step, and
//! releases it there, on success and on a failed launch alike: afterwards the helpers park
//! again (its own test binary, so no other test holds the process-wide team meanwhile).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_cuda::{host_team_threads, Device, HostTeam, Stream, StreamPriority};
use aegis_exec::{ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel};
use aegis_memory::DeviceMemoryPool;

/// Waits (up to 5 s) until every helper of the process-wide team is parked.
fn wait_all_parked() {
    let team = HostTeam::global();
    let helpers = team.threads() - 1;
    let until = Instant::now() + Duration::from_secs(5);
    while team.parked_helpers() != helpers {
        assert!(
            Instant::now() < until,
            "{} of {helpers} helpers parked after the inference",
            team.parked_helpers()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_inference_releases_the_team_when_it_ends() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/models/tv-squeezenet1_1/model.onnx");
    let graph = Arc::new(ExecutionGraph::load(&p, &LoadOptions::default()).unwrap());
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 30);
    let opts = ExecOptions {
        streams: 1,
        threads: 2,
    };
    let model = PreparedModel::prepare(Arc::clone(&graph), &pool, &opts).unwrap();
    let s = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let x = HostTensor::from_f32(vec![1, 3, 224, 224], &vec![0.5; 3 * 224 * 224]).unwrap();
    for _ in 0..3 {
        Executor::run(&model, std::slice::from_ref(&x), &[&s]).unwrap();
    }
    if host_team_threads() > 1 {
        wait_all_parked();
    }
    // Inputs of the wrong shape fail before anything is enqueued: the hold taken for them
    // is dropped on the way out.
    let bad = HostTensor::from_f32(vec![1, 3, 8, 8], &[0.5; 3 * 64]).unwrap();
    assert!(Executor::run(&model, &[bad], &[&s]).is_err());
    if host_team_threads() > 1 {
        wait_all_parked();
    }
}
