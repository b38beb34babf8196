//! The demo's whole story (schedule, rerun, acknowledgements: the lifecycle handlers calling
//! the vendor's usage API and acknowledgement endpoint with the secure token) leaves no secret
//! in any log line, captured at trace level through the program's own log pipeline.

mod common;

use std::time::Duration;

use connect_sandbox::Sandbox;
use connect_usage::story::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_logs_no_secret() {
    // The program's own log pipeline: its secret-safe filter, then everything at trace.
    let capture = common::capture_all_logs();
    let options = DemoOptions {
        usage_records: 300,
        timeout: Duration::from_secs(60),
        ..DemoOptions::default()
    };
    let sb = Sandbox::start(story::sandbox_config(&options))
        .await
        .expect("sandbox");
    let outcome = story::run_on(&sb, &options, |_| {}).await.expect("demo");
    assert!(outcome.completed, "{:#?}", outcome.problems);
    let logs = capture.text();
    for expected in [
        "the provider rejected the usage file",
        "acceptance acknowledged to the vendor",
    ] {
        assert!(
            logs.contains(expected),
            "the capture sees the handlers: {expected}"
        );
    }
    let key = sb.key("extension").expect("extension key");
    let secrets = [
        key.expose().to_owned(),
        key.expose()
            .split(':')
            .nth(1)
            .expect("secret part")
            .to_owned(),
        sb.usage_token().expose().to_owned(),
        sb.vendor_key().expose().to_owned(),
    ];
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a secret in the logs");
    }
    assert!(!format!("{outcome:?}").contains(sb.usage_token().expose()));
}
