//! Helpers shared by the runner's integration tests (and, through a `#[path]` module, by the
//! product's): the sandbox's test helpers, a capture of every log record, the platform-side
//! helpers of [`runner`] and Prometheus' checker ([`promtool`]).
#![allow(dead_code)]

pub mod promtool;
pub mod runner;
pub mod shipping;

pub use connect_sandbox::testing::*;

/// Installs the program's own log pipeline (its secret-safe filter) writing everything, down
/// to trace, into a capture: once per test binary.
pub fn capture_all_logs() -> Capture {
    use tracing_subscriber::prelude::*;
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(connect_eaas::logging::secret_safe_filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(capture.clone())
                .with_ansi(false),
        )
        .try_init()
        .expect("the only subscriber of this test binary");
    capture
}

/// Log output captured in memory, for tests that search every log line.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
