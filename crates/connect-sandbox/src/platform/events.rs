//! The event types the sandbox's platform knows, as Connect's event definitions describe
//! them: what `GET /devops/event-definitions` lists, what a runner may subscribe to in its
//! setup, and where a background task's object is loaded from.

use serde_json::{Value as Json, json};

/// An event type the sandbox knows, as Connect's event definitions describe it.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    pub event_type: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub group: &'static str,
    /// The object statuses the event can be subscribed for.
    pub statuses: &'static [&'static str],
    /// `(collection, resource)` the runner loads the object from (background events).
    pub endpoints: Option<(&'static str, &'static str)>,
}

pub const EVENT_TYPES: &[EventType] = &[
    EventType {
        event_type: "usage_file_request_processing",
        name: "Usage File Request Processing",
        category: "background",
        group: "Usage",
        statuses: &[
            "draft",
            "uploading",
            "uploaded",
            "invalid",
            "processing",
            "ready",
            "rejected",
            "pending",
            "accepted",
            "closed",
        ],
        endpoints: Some(("usage/files", "usage/files/{pk}")),
    },
    EventType {
        event_type: "part_usage_file_request_processing",
        name: "Part Usage File Request Processing",
        category: "background",
        group: "Usage",
        statuses: &["draft", "ready", "closed", "failed"],
        endpoints: None,
    },
    EventType {
        event_type: "product_action_execution",
        name: "Product Action Execution",
        category: "interactive",
        group: "Product",
        statuses: &[],
        endpoints: None,
    },
    EventType {
        event_type: "product_custom_event_processing",
        name: "Product Custom Event Processing",
        category: "interactive",
        group: "Product",
        statuses: &[],
        endpoints: None,
    },
    EventType {
        event_type: "asset_purchase_request_validation",
        name: "Asset Purchase Request Validation",
        category: "interactive",
        group: "Fulfillment",
        statuses: &["draft", "inquiring"],
        endpoints: None,
    },
    EventType {
        event_type: "asset_change_request_validation",
        name: "Asset Change Request Validation",
        category: "interactive",
        group: "Fulfillment",
        statuses: &["draft", "inquiring"],
        endpoints: None,
    },
    EventType {
        event_type: "scheduled_execution",
        name: "Scheduled Execution",
        category: "scheduled",
        group: "Scheduled",
        statuses: &[],
        endpoints: None,
    },
];

/// The filter template of the event definitions the sandbox sends.
pub const STATUS_FILTER_TEMPLATE: &str = "and(eq(id,${_object_id_}),in(status,${_statuses_}))";

/// `GET /devops/event-definitions` items.
pub fn event_definitions() -> Vec<Json> {
    EVENT_TYPES
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "id": i + 1, "source": "system", "type": e.event_type, "name": e.name,
                "description": format!("{} event.", e.name), "category": e.category,
                "group": e.group, "extension_type": "products", "object_statuses": e.statuses,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_list_every_known_event() {
        let defs = event_definitions();
        assert_eq!(defs.len(), EVENT_TYPES.len());
        assert_eq!(defs[0]["type"], "usage_file_request_processing");
        assert_eq!(
            defs[0]["object_statuses"].as_array().map(Vec::len),
            Some(10)
        );
    }
}
