//! The declaration macros, as an extension uses them: every kind of declaration made with its
//! macro is collected at link time next to the library's own (the monthly report).

use std::sync::atomic::{AtomicUsize, Ordering};

use connect_eaas::registry::{HookContext, Registry};
use connect_eaas::runner::{HandlerError, Outcome, TaskContext, Variables};
use serde_json::Value;

connect_eaas::event_handler! {
    event: "part_usage_file_request_processing",
    statuses: ["ready", "closed"],
    handler: on_usage_file,
}

connect_eaas::event_handler! {
    event: "product_custom_event_processing",
    handler: on_custom_event,
}

connect_eaas::schedulable! {
    method: "tidy_up",
    name: "Tidy up",
    description: "A second schedulable, next to the library's.",
    handler: tidy_up,
}

connect_eaas::variable! { name: "MACRO_SETTING", initial_value: "on", secure: false }

connect_eaas::on_startup!(started);
connect_eaas::on_shutdown!(stopped);

static STARTED: AtomicUsize = AtomicUsize::new(0);
static STOPPED: AtomicUsize = AtomicUsize::new(0);

async fn on_usage_file(_: TaskContext, _: Value) -> Result<Outcome, HandlerError> {
    Ok(Outcome::done())
}

async fn on_custom_event(_: TaskContext, data: Value) -> Result<Outcome, HandlerError> {
    Ok(Outcome::respond(200, None, Some(data)))
}

async fn tidy_up(_: TaskContext, _: Value) -> Result<Outcome, HandlerError> {
    Ok(Outcome::done())
}

async fn started(_: HookContext) {
    STARTED.fetch_add(1, Ordering::SeqCst);
}

async fn stopped(_: HookContext) {
    STOPPED.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test]
async fn macros_declare_and_collect() {
    let r = Registry::collect().expect("no duplicates");
    let usage = r
        .event("part_usage_file_request_processing")
        .expect("declared");
    assert_eq!(usage.statuses, ["ready", "closed"]);
    let lifecycle = r
        .event("usage_file_request_processing")
        .expect("the library's own");
    assert_eq!(
        lifecycle.statuses,
        ["ready", "invalid", "rejected", "accepted", "closed"]
    );
    assert!(usage.name.ends_with("::on_usage_file"), "{}", usage.name);
    assert!(
        r.event("product_custom_event_processing")
            .is_some_and(|e| e.statuses.is_empty())
    );
    let methods: Vec<&str> = r.schedulables().map(|s| s.method).collect();
    assert_eq!(
        methods,
        ["report_monthly_usage", "tidy_up"],
        "the library's and this one"
    );
    let vars: Vec<&str> = r.variables().iter().map(|v| v.name).collect();
    assert_eq!(
        vars,
        [
            "MACRO_SETTING",
            "MAX_RECORDS_PER_FILE",
            "REPORT_CONCURRENCY",
            "REQUIRE_FULL_COVERAGE",
            "RERUN_LIMIT",
            "USAGE_ACK_URL",
            "USAGE_AGGREGATION",
            "USAGE_QUERY",
            "USAGE_SOURCE",
            "USAGE_SOURCE_TOKEN"
        ]
    );

    let ctx = HookContext {
        config: Variables::default(),
        environment_type: None,
    };
    for h in r.startup_hooks() {
        (h.hook)(ctx.clone()).await;
    }
    for h in r.shutdown_hooks() {
        (h.hook)(ctx.clone()).await;
    }
    assert_eq!(
        (
            STARTED.load(Ordering::SeqCst),
            STOPPED.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    let d = connect_usage::builtin_descriptor().expect("descriptor");
    let req = serde_json::to_value(r.setup_request(&d)).expect("json");
    assert_eq!(
        req["event_subscriptions"]["part_usage_file_request_processing"],
        serde_json::json!(["ready", "closed"])
    );
}
