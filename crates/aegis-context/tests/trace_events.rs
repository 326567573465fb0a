//! The context's lifecycle trace events: ContextCreated, ExecutionStarted,
//! ExecutionCompleted, FaultRecorded and ContextDestroyed, each with the model id and its
//! numbers (bytes, streams, microseconds, counts).
#![cfg(not(loom))]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aegis_context::{Backend, BudgetLimits, ExecutionContext};
use aegis_cuda::{Device, FaultRule, FaultTrigger, HostDeviceOptions, InjectedFaultKind};
use aegis_exec::ExecOptions;
use common::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

type Fields = BTreeMap<String, String>;

/// Records every event's fields as text.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Fields>>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").replace('"', ""),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

impl Recorder {
    /// The fields of every event named `name` (the `event` field).
    fn named(&self, name: &str) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.get("event").map(String::as_str) == Some(name))
            .cloned()
            .collect()
    }
}

fn number(fields: &Fields, key: &str) -> u64 {
    fields
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {fields:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("`{key}` is not a number in {fields:?}"))
}

#[test]
fn lifecycle_events_carry_the_model_and_its_numbers() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let device = Device::host_with(HostDeviceOptions {
        capacity: 1 << 30,
        threads: 2,
        ..HostDeviceOptions::default()
    });
    let backend = Backend::new(
        device.clone(),
        ExecOptions {
            streams: 1,
            threads: 2,
        },
    );
    backend.register(SQUEEZE, load(SQUEEZE)).unwrap();
    let input = reference_input(SQUEEZE);
    tracing::subscriber::with_default(subscriber, || {
        let ctx =
            ExecutionContext::create(SQUEEZE, BudgetLimits::new(1 << 30, 1), &backend).unwrap();
        ctx.execute(std::slice::from_ref(&input)).unwrap();
        device
            .inject_fault(FaultRule {
                trigger: FaultTrigger::NthItem(1),
                kind: InjectedFaultKind::Recoverable,
            })
            .unwrap();
        assert!(ctx.execute(std::slice::from_ref(&input)).is_err());
        drop(ctx);
    });

    let created = recorder.named("ContextCreated");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["model"], SQUEEZE);
    assert_eq!(number(&created[0], "budget_bytes"), 1 << 30);
    assert_eq!(number(&created[0], "budget_streams"), 1);
    assert!(number(&created[0], "weights_bytes") > 0);
    assert!(number(&created[0], "arena_bytes") > 0);

    let started = recorder.named("ExecutionStarted");
    assert_eq!(started.len(), 2, "two runs started");
    for s in &started {
        assert_eq!(s["model"], SQUEEZE);
        assert_eq!(number(s, "input_bytes"), input.byte_len() as u64);
        assert_eq!(number(s, "streams"), 1);
        assert!(number(s, "memory_used") > number(s, "input_bytes"));
    }

    let completed = recorder.named("ExecutionCompleted");
    assert_eq!(completed.len(), 1, "one run succeeded");
    assert_eq!(completed[0]["model"], SQUEEZE);
    assert!(number(&completed[0], "micros") > 0);
    assert_eq!(number(&completed[0], "outputs"), 1);

    let faults = recorder.named("FaultRecorded");
    assert_eq!(faults.len(), 1, "one run failed");
    assert_eq!(faults[0]["model"], SQUEEZE);
    assert_eq!(faults[0]["category"], "transient");
    assert!(faults[0]["fault"].contains("injected"), "{:?}", faults[0]);
    number(&faults[0], "micros");

    let destroyed = recorder.named("ContextDestroyed");
    assert_eq!(destroyed.len(), 1);
    assert_eq!(destroyed[0]["model"], SQUEEZE);
    assert_eq!(destroyed[0]["from"], "Faulted");
    assert!(number(&destroyed[0], "released_bytes") > 0);
    assert_eq!(number(&destroyed[0], "inferences"), 1);
    assert_eq!(number(&destroyed[0], "errors"), 1);
    assert_eq!(device.memory_used(), 0);
}
