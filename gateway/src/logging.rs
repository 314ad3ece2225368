//! The process's log subscriber: the service's logs through tracing-subscriber's formatter,
//! the access log ([`crate::api::access`]) through a layer of its own, both behind one
//! filter that a reload can change, both written by a writer thread.
//!
//! # Layout
//! - [`init`]: installs the subscriber; [`Logging`] keeps its writer thread alive.
//! - [`AccessLayer`]: writes each access line itself, in the configured format.
//!
//! # Why the access log has a layer of its own
//! It is one line per request and on by default, so what it costs is paid by every request.
//! tracing-subscriber's formatter is built for any event (spans, any field, any value): the
//! line through it cost about as much as the drawdown it records. [`AccessLayer`] knows that
//! every field is a string, a number or the message, and writes them straight into one
//! buffer.
//!
//! # Writes
//! Lines go to a non-blocking writer (tracing-appender): a request's thread only queues its
//! line, and one writer thread makes the system calls. The writer thread buffers what it
//! takes off the queue and flushes when the queue is empty, so a quiet gateway writes each
//! line at once and a busy one writes many lines per system call (the writer thread's CPU
//! is the gateway's too). When the queue ([`QUEUED_LINES`]) is full, lines are dropped
//! rather than slow the requests down, and counted: `gateway_log_lines_dropped_total`.

use crate::api::access::TARGET;
use crate::api::reload::LogFilterHook;
use crate::config::{LogConfig, LogFormat};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The most lines queued for the writer thread (a line is a few hundred bytes: the queue
/// holds at most a few MiB).
pub const QUEUED_LINES: usize = 16 * 1024;

/// The writer thread's buffer: what it writes in one system call at most.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The lines the writer dropped since [`init`] (`None` before it, as in tests).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The installed subscriber's handles: dropping it flushes the lines still queued.
pub struct Logging {
    /// How a reload changes the filter; `None` when `RUST_LOG` set it (the environment wins
    /// over the file, on reload too).
    pub filter_hook: Option<LogFilterHook>,
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

/// Installs the process's subscriber for `log`, writing to standard output.
pub fn init(log: &LogConfig) -> Logging {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, reload};
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&log.filter));
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BUFFER_BYTES,
            std::io::stdout(),
        ));
    // A second `init` (only tests could) keeps counting the first writer's drops.
    let _ = DROPPED.set(writer.error_counter());
    let others = filter_fn(|m| m.target() != TARGET);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer.clone());
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(AccessLayer::new(log.format, writer));
    match log.format {
        LogFormat::Json => registry.with(fmt.json().with_filter(others)).init(),
        LogFormat::Pretty => registry.with(fmt.with_filter(others)).init(),
    }
    let filter_hook = (!fixed).then(|| {
        Box::new(move |directive: &str| {
            let filter = EnvFilter::try_new(directive).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }) as LogFilterHook
    });
    Logging {
        filter_hook,
        _writer: guard,
    }
}

/// `gateway_log_lines_dropped_total`, read at scrape time from the writer's own count.
#[derive(Debug, Default)]
pub struct DroppedLines;

impl DroppedLines {
    /// Registers the count under the `gateway` prefix.
    pub fn register(registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("gateway")
            .register_collector(Box::new(DroppedLines));
    }
}

impl Collector for DroppedLines {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let dropped = DROPPED.get().map_or(0, ErrorCounter::dropped_lines);
        let counter = ConstCounter::new(u64::try_from(dropped).unwrap_or(u64::MAX));
        counter.encode(encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because the writer thread's queue was full",
            None,
            counter.metric_type(),
        )?)
    }
}

/// Writes the events of the access target ([`TARGET`]), one line each, to `W`; other
/// events are not its to write. As tracing-subscriber writes them: in JSON,
/// `{"timestamp":…,"level":"INFO","fields":{"message":"answered",…},"target":"access"}`;
/// pretty, `<timestamp>  INFO access: answered request_id="…" status=200 …`.
#[derive(Debug)]
pub struct AccessLayer<W> {
    format: LogFormat,
    writer: W,
}

impl<W> AccessLayer<W> {
    /// Lines in `format`, to `writer`.
    pub fn new(format: LogFormat, writer: W) -> Self {
        AccessLayer { format, writer }
    }
}

impl<S, W> Layer<S> for AccessLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != TARGET {
            return;
        }
        let mut line = String::with_capacity(512);
        let now = jiff::Timestamp::now();
        match self.format {
            LogFormat::Json => {
                let _ = write!(
                    line,
                    r#"{{"timestamp":"{now}","level":"{}","fields":{{"#,
                    meta.level()
                );
                event.record(&mut Fields {
                    out: &mut line,
                    json: true,
                    first: true,
                });
                let _ = writeln!(line, r#"}},"target":"{TARGET}"}}"#);
            }
            LogFormat::Pretty => {
                let _ = write!(line, "{now} {:>5} {TARGET}:", meta.level());
                event.record(&mut Fields {
                    out: &mut line,
                    json: false,
                    first: true,
                });
                line.push('\n');
            }
        }
        // A full queue drops the line (see the module docs); there is nothing else to do.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// Writes an event's fields: `"name":value` pairs in JSON, ` name=value` pretty (the
/// message bare, first).
struct Fields<'a> {
    out: &'a mut String,
    json: bool,
    first: bool,
}

impl Fields<'_> {
    fn name(&mut self, field: &Field) {
        if self.json {
            if !self.first {
                self.out.push(',');
            }
            self.out.push('"');
            self.out.push_str(field.name());
            self.out.push_str("\":");
        } else {
            self.out.push(' ');
            if field.name() != "message" {
                self.out.push_str(field.name());
                self.out.push('=');
            }
        }
        self.first = false;
    }

    fn number(&mut self, field: &Field, v: impl std::fmt::Display) {
        self.name(field);
        let _ = write!(self.out, "{v}");
    }
}

/// `s` as a JSON string (which is also how tracing-subscriber's pretty format quotes one).
fn quote(out: &mut String, s: &str) {
    out.push('"');
    // Ids, codes and the message: almost never anything to escape.
    if !s
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f)
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        if !self.json && field.name() == "message" {
            self.out.push_str(value);
        } else {
            quote(self.out, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // The message (`format_args!`) comes here: its Debug is its text.
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn dropped_lines_are_a_counter_under_the_gateway_prefix() {
        let mut registry = Registry::default();
        DroppedLines::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        // No writer in this test process: nothing dropped.
        assert!(
            text.contains("# TYPE gateway_log_lines_dropped counter\n")
                && text.contains("\ngateway_log_lines_dropped_total 0\n"),
            "{text}"
        );
    }

    /// A writer that keeps what was written.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Kept {
        type Writer = Kept;
        fn make_writer(&'w self) -> Kept {
            self.clone()
        }
    }

    fn lines(format: LogFormat) -> String {
        let kept = Kept::default();
        let subscriber =
            tracing_subscriber::registry().with(AccessLayer::new(format, kept.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "gateway::other", "not an access line");
            let caller: Option<&str> = None;
            tracing::info!(
                target: TARGET,
                request_id = "01K\"x",
                caller,
                status = 200u16,
                latency_us = 1830u64,
                "answered"
            );
        });
        String::from_utf8(kept.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_json_line_is_one_object_with_the_fields_as_given() {
        let out = lines(LogFormat::Json);
        assert_eq!(out.lines().count(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["level"], "INFO");
        assert_eq!(
            v["fields"],
            serde_json::json!({"message": "answered", "request_id": "01K\"x",
                "status": 200, "latency_us": 1830})
        );
        let at: jiff::Timestamp = v["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(at <= jiff::Timestamp::now());
    }

    #[test]
    fn a_pretty_line_names_each_field() {
        let out = lines(LogFormat::Pretty);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.trim_end().ends_with(
                r#" INFO access: answered request_id="01K\"x" status=200 latency_us=1830"#
            ),
            "{out}"
        );
    }
}
