//! The readable log line (`--log-format text`, the default): time, level and message first,
//! then the event's fields, then the task it belongs to in a few characters (its id and
//! object), or outside a task the runner's session (`interactive`, `background`). tracing's own
//! format leads with every enclosing span and all its fields
//! (`task{task_id=... category=... event_type=... object_id=...}:`) and the module path, which
//! put the message a hundred columns to the right; JSON (`--log-format json`) keeps everything.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `2026-12-03T04:30:00.603Z  INFO message key=value [TQ-554-000-013 UF-2026-11-0000-0002]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadableFormat;

impl<S, N> FormatEvent<S, N> for ReadableFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let level = *event.metadata().level();
        if writer.has_ansi_escapes() {
            write!(
                writer,
                "\x1b[2m{now}\x1b[0m {}{level:>5}\x1b[0m ",
                color(level)
            )?;
        } else {
            write!(writer, "{now} {level:>5} ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(tag) = ctx.event_scope().and_then(|scope| {
            // The innermost task, else the session (a runner holds two: interactive and
            // background, which log the same lines when they connect).
            let mut tag = None;
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(fields) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                match span.name() {
                    "task" => tag = Some(compact_task(fields.as_str())),
                    "session" if tag.is_none() => {
                        tag = field(fields.as_str(), "runner_type").map(str::to_owned);
                    }
                    _ => {}
                }
            }
            tag
        }) {
            write!(writer, " [{tag}]")?;
        }
        writeln!(writer)
    }
}

/// The fields of [`ReadableFormat`]: the message bare, then `name=value`, a value quoted (as
/// Rust quotes a string) when it holds a space or is empty, so that where one value ends and the
/// next field begins is never in doubt.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadableFields;

impl<'w> FormatFields<'w> for ReadableFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldWriter<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl FieldWriter<'_> {
    /// Writes `name=rendered` (the message: `rendered` alone) after a space unless first.
    fn write(&mut self, name: &str, rendered: &str) {
        if self.result.is_err() {
            return;
        }
        let gap = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{gap}{rendered}")
        } else {
            write!(self.writer, "{gap}{name}={rendered}")
        };
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" && (value.is_empty() || value.contains(char::is_whitespace)) {
            self.write(field.name(), &format!("{value:?}"));
        } else {
            self.write(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // A string given with `?` is already quoted.
        let quoted = text.len() >= 2 && text.starts_with('"') && text.ends_with('"');
        if quoted && field.name() != "message" {
            self.write(field.name(), &text);
        } else {
            self.record_str(field, &text);
        }
    }
}

fn color(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

/// The task's id and the object it is about, from the `task` span's formatted fields
/// (`task_id=TQ-... category=... event_type=... object_id=UF-...`).
fn compact_task(fields: &str) -> String {
    match (field(fields, "task_id"), field(fields, "object_id")) {
        (Some(task), Some(object)) if !object.is_empty() && object != task => {
            format!("{task} {object}")
        }
        (Some(task), _) => task.to_owned(),
        _ => fields.to_owned(),
    }
}

/// A field's value in a span's formatted fields (`name=value` or `name="value"`).
fn field<'a>(fields: &'a str, name: &str) -> Option<&'a str> {
    fields
        .split(' ')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing::{info, info_span, warn};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn time_level_and_message_lead_and_the_task_follows_in_brief() {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(ReadableFormat)
                .fmt_fields(ReadableFields)
                .with_ansi(false)
                .with_writer(move || sink.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let session = info_span!("session", runner_type = "background");
            let _s = session.enter();
            info!(period = "2024-04", "usage report starts");
            let task = info_span!(
                "task",
                task_id = "TQ-554-000-013",
                category = "background",
                event_type = "usage_file_request_processing",
                object_id = "UF-2026-11-0000-0002",
            );
            let _t = task.enter();
            warn!(attempt = 2, reason = %"connection refused", file = ?"UF-1", "request failed, retrying");
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let out: Vec<&str> = text.lines().collect();
        assert_eq!(out.len(), 2, "{text}");
        // 2026-12-03T04:30:00.603Z
        let (time, rest) = out[0].split_at(24);
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert_eq!(
            rest,
            "  INFO usage report starts period=2024-04 [background]"
        );
        assert_eq!(
            &out[1][24..],
            "  WARN request failed, retrying attempt=2 reason=\"connection refused\" file=\"UF-1\" [TQ-554-000-013 UF-2026-11-0000-0002]"
        );
    }

    #[test]
    fn a_task_about_itself_is_named_once() {
        assert_eq!(
            compact_task("task_id=TQ-1 category=\"scheduled\" event_type=x object_id=TQ-1"),
            "TQ-1"
        );
        assert_eq!(
            compact_task("task_id=TQ-1 category=background object_id=PR-2"),
            "TQ-1 PR-2"
        );
    }
}
