//! Two handlers declared for one event type in one program: the registry refuses to start,
//! naming both (and so does `connect-usage describe`/`run` for the binary's own handlers).

use connect_eaas::registry::{Registry, RegistryError};
use connect_eaas::runner::{HandlerError, Outcome, TaskContext};
use serde_json::Value;

mod first {
    use super::*;

    connect_eaas::event_handler! {
        event: "part_usage_file_request_processing",
        statuses: ["ready"],
        handler: on_ready,
    }

    pub async fn on_ready(_: TaskContext, _: Value) -> Result<Outcome, HandlerError> {
        Ok(Outcome::done())
    }
}

mod second {
    use super::*;

    connect_eaas::event_handler! {
        event: "part_usage_file_request_processing",
        statuses: ["rejected"],
        handler: on_rejected,
    }

    pub async fn on_rejected(_: TaskContext, _: Value) -> Result<Outcome, HandlerError> {
        Ok(Outcome::done())
    }
}

#[test]
fn two_handlers_for_one_event_are_refused_naming_both() {
    let e = Registry::collect().expect_err("a duplicate");
    let RegistryError::DuplicateEvent {
        event_type,
        first,
        second,
    } = &e
    else {
        panic!("not a duplicate event error: {e}");
    };
    assert_eq!(event_type, "part_usage_file_request_processing");
    assert!(first.ends_with("first::on_ready"), "{first}");
    assert!(second.ends_with("second::on_rejected"), "{second}");
    assert!(
        e.to_string()
            .contains("first::on_ready and registry_duplicates::second::on_rejected"),
        "{e}"
    );
}
