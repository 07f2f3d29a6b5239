//! The JSON log line (`[log] format = "json"`, the default): one object per event with its
//! timestamp, level, the event's own fields and its target — the shape of tracing-subscriber's
//! `json().flatten_event(true)`, key for key and in the same order, written straight into the
//! line's buffer.
//!
//! Why not tracing-subscriber's JSON format: it drives a serde serializer through an `io::Write`
//! adaptor over the line's `fmt::Write`, which checks every fragment it is handed for valid
//! UTF-8 again, and formats the timestamp into a `String` of its own per line. The gateway writes
//! one such line per request (`request settled`, ~20 fields), so the format is on the hot path:
//! see docs/BENCHMARKS.md ("Fat LTO, the JSON log line, …").
//!
//! Records of the `log` crate (some dependencies log through it) keep their own target and
//! level; their `log.*` bookkeeping fields are left out, as the library does for span fields.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of the JSON log.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        w.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut w)?;
        w.write_str("\",\"level\":\"")?;
        w.write_str(meta.level().as_str())?;
        w.write_char('"')?;
        let mut fields = Fields { w: &mut w, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        w.write_str(",\"target\":")?;
        string(&mut w, meta.target())?;
        w.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`; the first error stops the rest.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// Writes `,"name":` and then the value, unless a write failed before or the field is the
    /// `log` crate's bookkeeping.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = (|| {
            self.w.write_char(',')?;
            string(self.w, name)?;
            self.w.write_char(':')?;
            value(self.w)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    /// JSON has no NaN or infinity: those are `null`, as serde_json writes them.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| if value.is_finite() { write!(w, "{value:?}") } else { w.write_str("null") });
    }
}

/// `s` as a JSON string, quotes included.
fn string(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// A writer that escapes what it is given for the inside of a JSON string: `"`, `\` and the
/// control characters, with serde_json's short escapes where JSON has them.
struct Escaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..0x20 => "",
                _ => continue,
            };
            // `i` is at an ASCII byte, so both slices end on character boundaries.
            self.0.write_str(s.get(plain..i).unwrap_or_default())?;
            if short.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(short)?;
            }
            plain = i + 1;
        }
        self.0.write_str(s.get(plain..).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A string every JSON escape applies to, beside multi-byte characters that need none.
    const TRICKY: &str = "quote \" backslash \\ newline \n tab \t cr \r bell \u{7} del \u{7f} nul \0 é 日本 😀 \u{1f}";

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        /// The captured lines with each timestamp's value replaced by `T` (the clock moved).
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| {
                    let start = l.find("\"timestamp\":\"").unwrap() + "\"timestamp\":\"".len();
                    let end = start + l[start..].find('"').unwrap();
                    format!("{}T{}", &l[..start], &l[end..])
                })
                .collect()
        }
    }

    /// Events with every kind of field and strings that need escaping.
    fn emit() {
        tracing::info!(
            request_id = "0193a1b2c3d4",
            client_ip = %"127.0.0.1",
            status = 200u64,
            delta = -3i64,
            big = u128::MAX,
            small = i128::MIN,
            stream = true,
            ratio = 0.25f64,
            whole = 3.0f64,
            nan = f64::NAN,
            inf = f64::INFINITY,
            error.cause = %TRICKY,
            debug = ?Some(TRICKY),
            plain = TRICKY,
            "request settled"
        );
        tracing::warn!(request_id = "x", "stream failed: {}", TRICKY);
        tracing::error!("no fields at all");
    }

    fn capture(json_line: bool) -> Vec<String> {
        let out = Capture::default();
        let builder = tracing_subscriber::fmt().with_writer(out.clone()).with_max_level(tracing::Level::TRACE);
        if json_line {
            tracing::subscriber::with_default(builder.event_format(JsonLine).finish(), emit);
        } else {
            let library = builder.json().flatten_event(true).with_current_span(false).finish();
            tracing::subscriber::with_default(library, emit);
        }
        out.lines()
    }

    #[test]
    fn lines_are_the_json_format_of_tracing_subscriber_byte_for_byte() {
        let (ours, library) = (capture(true), capture(false));
        assert_eq!(ours.len(), 3);
        assert_eq!(ours, library);
    }

    #[test]
    fn lines_parse_as_json_with_every_value_intact() {
        let lines = capture(true);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request settled");
        assert_eq!(v["status"], 200);
        assert_eq!(v["delta"], -3);
        // 128-bit integers are strings, as the library writes them (past what JSON readers hold).
        assert_eq!(v["big"], u128::MAX.to_string());
        assert_eq!(v["stream"], true);
        assert_eq!(v["ratio"], 0.25);
        assert!(v["nan"].is_null() && v["inf"].is_null());
        assert_eq!(v["error.cause"], TRICKY);
        assert_eq!(v["plain"], TRICKY);
        assert_eq!(v["target"], module_path!());
        let warn: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(warn["message"], format!("stream failed: {TRICKY}"));
    }

    #[test]
    fn a_log_crate_record_keeps_its_target_and_level_without_bookkeeping_fields() {
        let out = Capture::default();
        let subscriber = tracing_subscriber::fmt().with_writer(out.clone()).event_format(JsonLine).finish();
        tracing::subscriber::with_default(subscriber, || {
            let record = log::Record::builder()
                .args(format_args!("pool exhausted"))
                .level(log::Level::Warn)
                .target("some_dependency::pool")
                .module_path(Some("some_dependency::pool"))
                .file(Some("pool.rs"))
                .line(Some(7))
                .build();
            tracing_log::format_trace(&record).unwrap();
        });
        let lines = out.lines();
        assert_eq!(
            lines,
            [r#"{"timestamp":"T","level":"WARN","message":"pool exhausted","target":"some_dependency::pool"}"#]
        );
    }

    #[test]
    fn a_failing_writer_stops_the_line() {
        struct Full;
        impl Write for Full {
            fn write_str(&mut self, _: &str) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        assert!(string(&mut Full, "x").is_err());
        assert!(Escaped(&mut Full).write_str("a\"b").is_err());
    }
}
