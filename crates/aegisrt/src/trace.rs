//! `--trace FILE`: a Chrome/Perfetto trace with host spans (tracing-chrome), every
//! scheduling decision with its reason, and a per-stream device timeline from the
//! scheduler's event timestamps.
//!
//! tracing-chrome writes the host side while the command runs. The decisions and the device
//! timeline are known precisely only afterwards (the scheduler's decision log; each request's
//! dispatch time and event-measured device time), so they are appended to the file once
//! tracing-chrome has flushed it, on the same clock (microseconds since the trace began).

use std::path::{Path, PathBuf};
use std::time::Instant;

use aegis_sched::{Action, Decision};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::CliResult;

/// Process id of the device timeline in the trace.
const DEVICE_PID: u64 = 2;
/// Process id of the scheduler's decisions.
const SCHED_PID: u64 = 3;

/// One inference as the device ran it.
#[derive(Debug, Clone)]
pub struct DeviceSpan {
    /// Scheduler stream index.
    pub stream: usize,
    /// Model.
    pub model: String,
    /// Request id.
    pub request: u64,
    /// Dispatch (start event).
    pub start: Instant,
    /// End event.
    pub end: Instant,
}

/// A trace being recorded.
pub struct TraceSession {
    path: PathBuf,
    t0: Instant,
    guard: Option<tracing_chrome::FlushGuard>,
}

impl std::fmt::Debug for TraceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSession")
            .field("path", &self.path)
            .finish()
    }
}

impl TraceSession {
    /// Starts recording to `path` (installs the global subscriber).
    pub fn start(path: &Path) -> CliResult<Self> {
        // Fail early, with the path in the message, rather than inside tracing-chrome.
        std::fs::write(path, b"[]")
            .map_err(|e| format!("cannot write trace file {}: {e}", path.display()))?;
        let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
            .file(path)
            .include_args(true)
            .build();
        let t0 = Instant::now();
        let filter = EnvFilter::new("info,aegis_sched=debug,aegis_context=debug,aegisrt=debug");
        let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|e| format!("cannot install the trace recorder: {e}"))?;
        Ok(Self {
            path: path.to_owned(),
            t0,
            guard: Some(guard),
        })
    }

    fn us(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64() * 1e6
    }

    /// Flushes the host trace and appends the decisions and the device timeline.
    pub fn finish(
        mut self,
        decisions: &[Decision],
        spans: &[DeviceSpan],
        streams: usize,
    ) -> CliResult<()> {
        drop(self.guard.take());
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read back trace {}: {e}", self.path.display()))?;
        let mut events: Vec<Value> = serde_json::from_str(text.trim_end().trim_end_matches(','))
            .or_else(|_| {
                serde_json::from_str(&format!("{}]", text.trim_end().trim_end_matches(',')))
            })
            .map_err(|e| format!("trace {} is not valid JSON: {e}", self.path.display()))?;
        events.push(meta(
            DEVICE_PID,
            None,
            "process_name",
            "device (event timestamps)",
        ));
        for s in 0..streams {
            events.push(meta(
                DEVICE_PID,
                Some(s as u64),
                "thread_name",
                &format!("stream {s}"),
            ));
        }
        events.push(meta(SCHED_PID, None, "process_name", "scheduler decisions"));
        events.push(meta(SCHED_PID, Some(0), "thread_name", "decisions"));
        for s in spans {
            events.push(json!({
                "ph": "X",
                "pid": DEVICE_PID,
                "tid": s.stream,
                "name": s.model,
                "cat": "device",
                "ts": self.us(s.start),
                "dur": s.end.saturating_duration_since(s.start).as_secs_f64() * 1e6,
                "args": { "request": s.request, "model": s.model, "stream": s.stream },
            }));
        }
        for d in decisions {
            let (action, stream, reason) = describe(d);
            events.push(json!({
                "ph": "i",
                "s": "t",
                "pid": SCHED_PID,
                "tid": 0,
                "name": format!("{action} {}", d.model),
                "cat": "decision",
                "ts": self.us(d.at),
                "args": {
                    "request": d.request.0,
                    "model": d.model.to_string(),
                    "action": action,
                    "stream": stream,
                    "reason": reason,
                    "policy": d.policy,
                    "priority": d.priority.0,
                    "estimate_us": d.estimate.as_micros() as u64,
                    "slack_us": d.slack.map(|s| s.0 / 1000),
                    "candidates": d.candidates,
                    "queue_depth": d.queue_depth,
                },
            }));
        }
        let out = serde_json::to_string(&events).map_err(|e| e.to_string())?;
        std::fs::write(&self.path, out)
            .map_err(|e| format!("cannot write trace {}: {e}", self.path.display()))?;
        Ok(())
    }
}

fn meta(pid: u64, tid: Option<u64>, name: &str, value: &str) -> Value {
    json!({ "ph": "M", "pid": pid, "tid": tid.unwrap_or(0), "name": name, "args": { "name": value } })
}

/// (action, stream, reason) of a decision, in words.
fn describe(d: &Decision) -> (&'static str, Option<usize>, String) {
    match &d.action {
        Action::Dispatched { stream } => (
            "dispatch",
            Some(*stream),
            format!(
                "{}: chosen among {} candidate(s), priority {}, estimate {:.3} ms{}",
                d.policy,
                d.candidates,
                d.priority.0,
                d.estimate.as_secs_f64() * 1e3,
                d.slack.map(|s| format!(", slack {s}")).unwrap_or_default()
            ),
        ),
        Action::Rejected(r) => ("reject", None, r.to_string()),
        Action::Cancelled(c) => ("cancel", None, format!("{c:?}")),
        Action::Refused(k) => ("refuse", None, k.to_string()),
    }
}
