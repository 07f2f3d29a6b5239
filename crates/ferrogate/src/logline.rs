//! The JSON log line (`[log] format = "json"`, the default): one object per event with its
//! timestamp, level, the event's own fields and its target — the shape of tracing-subscriber's
//! `json().flatten_event(true)`, key for key and in the same order, made in a `String` the
//! thread keeps and handed to the library's buffer in one write.
//!
//! Why not tracing-subscriber's JSON format: it drives a serde serializer through an `io::Write`
//! adaptor over the line's `fmt::Write`, which checks every fragment it is handed for valid
//! UTF-8 again, and formats the timestamp into a `String` of its own per line. The gateway writes
//! one such line per request (`request settled`, ~20 fields), so the format is on the hot path:
//! see docs/BENCHMARKS.md ("Fat LTO, the JSON log line, …").
//!
//! Records of the `log` crate (some dependencies log through it) keep their own target and
//! level; their `log.*` bookkeeping fields are left out, as the library does for span fields.

use std::cell::RefCell;
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
        thread_local! {
            /// The line being made, kept between lines for its capacity.
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        // The line is made in a `String` and handed to the library's `Writer` in one write: the
        // `Writer` reaches its buffer through a `dyn fmt::Write`, one indirect call per fragment
        // (~60 for the access-log line). Should the buffer be in use (tracing drops events
        // logged from inside the subscriber, so it should not) or gone (thread exit), a line
        // gets a buffer of its own.
        let mut make = |line: &mut String| {
            line.clear();
            write_line(line, event)?;
            w.write_str(line)
        };
        let kept = LINE.try_with(|line| {
            let mut line = line.try_borrow_mut().ok()?;
            let written = make(&mut line);
            if line.capacity() > MAX_KEPT {
                *line = String::new();
            }
            Some(written)
        });
        match kept {
            Ok(Some(written)) => written,
            _ => make(&mut String::new()),
        }
    }
}

/// The most a thread keeps of a line's buffer between lines (a rare huge line is let go).
const MAX_KEPT: usize = 64 * 1024;

/// One event as its JSON line, newline included.
fn write_line(w: &mut impl Write, event: &Event<'_>) -> fmt::Result {
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    w.write_str("{\"timestamp\":\"")?;
    timestamp(w, std::time::SystemTime::now())?;
    w.write_str("\",\"level\":\"")?;
    w.write_str(meta.level().as_str())?;
    w.write_char('"')?;
    let mut fields = Fields { w: &mut *w, result: Ok(()) };
    event.record(&mut fields);
    fields.result?;
    w.write_str(",\"target\":")?;
    string(w, meta.target())?;
    w.write_str("}\n")
}

/// Writes each field as `,"name":value`; the first error stops the rest.
struct Fields<'a, W: Write> {
    w: &'a mut W,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    /// Writes `,"name":` and then the value, unless a write failed before or the field is the
    /// `log` crate's bookkeeping.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = (|| {
            self.w.write_str(",\"")?;
            Escaped(self.w).write_str(name)?;
            self.w.write_str("\":")?;
            value(self.w)
        })();
    }
}

impl<W: Write> Visit for Fields<'_, W> {
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
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    /// Digits as serde_json writes them (its `Number` formats a float as its serializer does);
    /// JSON has no NaN or infinity: those are `null`, as serde_json writes them too.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| match serde_json::Number::from_f64(value) {
            Some(n) => write!(w, "{n}"),
            None => w.write_str("null"),
        });
    }
}

/// `s` as a JSON string, quotes included.
fn string(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// A writer that escapes what it is given for the inside of a JSON string: `"`, `\` and the
/// control characters, with serde_json's short escapes where JSON has them. Text is looked at 16
/// bytes at a time (a test the compiler vectorizes); a block with nothing to escape is skipped
/// whole, and the plain runs between escapes are written in one piece.
struct Escaped<'a, W: Write>(&'a mut W);

/// Whether byte `b` stands in a JSON string as it is (not `"`, `\` or a control character).
const fn plain(b: u8) -> bool {
    b >= 0x20 && b != b'"' && b != b'\\'
}

/// What the JSON string needs for byte `b`: `None` when it is [`plain`], `Some("")` for a control
/// character without a short escape (written `\u00XX`).
fn escape(b: u8) -> Option<&'static str> {
    if plain(b) {
        return None;
    }
    Some(match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        0x08 => "\\b",
        0x0c => "\\f",
        _ => "",
    })
}

const BLOCK: usize = 16;

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // The start of the run not yet written.
        let mut from = 0;
        for (n, block) in s.as_bytes().chunks(BLOCK).enumerate() {
            if block.iter().fold(true, |all, &b| all & plain(b)) {
                continue;
            }
            for (j, &b) in block.iter().enumerate() {
                let Some(short) = escape(b) else { continue };
                let i = n * BLOCK + j;
                // `i` is at an ASCII byte, so both slices end on character boundaries.
                self.0.write_str(s.get(from..i).unwrap_or_default())?;
                if short.is_empty() {
                    write!(self.0, "\\u{b:04x}")?;
                } else {
                    self.0.write_str(short)?;
                }
                from = i + 1;
            }
        }
        self.0.write_str(s.get(from..).unwrap_or_default())
    }
}

/// The time as tracing-subscriber's `SystemTime` writes it (`2026-12-07T19:19:00.123456Z`, UTC,
/// microseconds). The part up to the second is kept per thread and made again only when the
/// second changes. A clock before 1970 or after 9999 is left to the library (which reads it
/// again).
fn timestamp(w: &mut impl Write, now: std::time::SystemTime) -> fmt::Result {
    use std::cell::Cell;
    thread_local! {
        /// The second last written, and its text up to the decimal point.
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let Ok(since) = now.duration_since(std::time::UNIX_EPOCH) else {
        return SystemTime.format_time(&mut Writer::new(w));
    };
    let secs = since.as_secs();
    let prefix = match SECOND.try_with(Cell::get) {
        Ok((at, text)) if at == secs => text,
        _ => {
            let Some(text) = second_text(secs) else { return SystemTime.format_time(&mut Writer::new(w)) };
            let _ = SECOND.try_with(|c| c.set((secs, text)));
            text
        }
    };
    w.write_str(std::str::from_utf8(&prefix).map_err(|_| fmt::Error)?)?;
    let mut micros = [b'0'; 6];
    let mut v = since.subsec_micros();
    for d in micros.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    w.write_str(std::str::from_utf8(&micros).map_err(|_| fmt::Error)?)?;
    w.write_char('Z')
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` after 1970 (UTC), or `None` past the year 9999: the
/// protocol crate's RFC 3339 writer (Ollama's `created_at`, the same shape), cut at the second.
fn second_text(secs: u64) -> Option<[u8; 20]> {
    /// 9999-12-31T23:59:59Z.
    const LAST: u64 = 253_402_300_799;
    if secs > LAST {
        return None;
    }
    let text = ferrogate_protocol::ollama::front::rfc3339(std::time::Duration::from_secs(secs));
    text.as_bytes().get(..20)?.try_into().ok()
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
            tiny = 1.5e-7f64,
            huge = 1e21f64,
            third = 1.0f64 / 3.0,
            negative = -1234.5678f64,
            most = u64::MAX,
            least = i64::MIN,
            long_plain = "a plain value longer than one block of sixteen bytes, nothing to escape",
            escape_at_block_edges = "0123456789abcde\"0123456789abcde\\0123456789abcdef\n",
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

    /// A field whose `Debug` logs while the outer line is being made.
    struct Chatty;

    impl fmt::Debug for Chatty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            tracing::info!(inner = "yes", "logged while formatting");
            f.write_str("chatty")
        }
    }

    /// tracing drops an event dispatched from inside the subscriber (its re-entrancy guard), so the
    /// line's buffer is never asked for twice; the lines around it stay whole.
    #[test]
    fn a_field_that_logs_while_the_line_is_made_leaves_the_lines_whole() {
        let out = Capture::default();
        let subscriber = tracing_subscriber::fmt().with_writer(out.clone()).event_format(JsonLine).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(field = ?Chatty, "outer");
            tracing::info!(after = "x", "next");
        });
        let lines: Vec<serde_json::Value> = out.lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        let messages: Vec<&str> = lines.iter().filter_map(|v| v["message"].as_str()).collect();
        assert_eq!(messages, ["outer", "next"], "{lines:?}");
        assert_eq!((lines[0]["field"].as_str(), lines[1]["after"].as_str()), (Some("chatty"), Some("x")));
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

    /// `timestamp` at `secs` seconds and `micros` microseconds after 1970.
    fn stamp(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000);
        timestamp(&mut Writer::new(&mut out), at).unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(stamp(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(stamp(1_796_670_000, 123_456), "2026-12-07T19:00:00.123456Z");
        assert_eq!(stamp(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(stamp(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        assert!(second_text(253_402_300_800).is_none(), "the year 10000 is left to the library");
        // The second kept per thread is not reused for another second, before or after.
        assert_eq!(stamp(1_796_670_001, 0), "2026-12-07T19:00:01.000000Z");
        assert_eq!(stamp(1_796_669_999, 0), "2026-12-07T18:59:59.000000Z");
    }

    #[test]
    fn the_calendar_agrees_with_a_calendar_library_every_day_for_ten_thousand_years() {
        let mut day = 0u64;
        while day < 2_932_897 {
            let date = time::OffsetDateTime::from_unix_timestamp(i64::try_from(day * 86_400).unwrap()).unwrap().date();
            let expected = format!("{:04}-{:02}-{:02}T00:00:00.", date.year(), u8::from(date.month()), date.day());
            assert_eq!(second_text(day * 86_400).unwrap(), expected.as_bytes(), "day {day}");
            day += 1;
        }
    }

    #[test]
    fn the_clock_now_is_written_as_the_library_writes_it() {
        // The library reads the clock itself: compare the same second, retrying across a tick.
        let same_second = (0..5).find_map(|_| {
            let now = std::time::SystemTime::now();
            let (mut ours, mut library) = (String::new(), String::new());
            timestamp(&mut Writer::new(&mut ours), now).unwrap();
            SystemTime.format_time(&mut Writer::new(&mut library)).unwrap();
            (ours[..20] == library[..20]).then_some((ours, library))
        });
        assert!(same_second.is_some(), "the written second never matched the library's");
        let Some((ours, library)) = same_second else { return };
        assert_eq!((ours.len(), &ours[26..]), (library.len(), "Z"));
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
