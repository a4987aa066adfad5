//! Logging: tracing to stderr, level from `RUST_LOG` or `-v` flags, and a bounded in-memory
//! tail of recent warnings and errors that the operator console reads (`Telemetry::log`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use vsa_protocol::LogLine;

/// Lines kept in the tail.
const TAIL: usize = 500;

/// The recent warnings and errors, oldest first, numbered.
#[derive(Debug, Default)]
pub struct LogTail {
    lines: Mutex<(u64, VecDeque<LogLine>)>,
}

impl LogTail {
    /// Keeps one line (dropping the oldest past the bound).
    pub fn push(&self, level: &str, target: &str, message: String) {
        let Ok(mut g) = self.lines.lock() else {
            return;
        };
        g.0 += 1;
        let seq = g.0;
        if g.1.len() == TAIL {
            g.1.pop_front();
        }
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        g.1.push_back(LogLine {
            seq,
            unix_ms,
            level: level.to_string(),
            target: target.to_string(),
            message,
        });
    }

    /// Lines numbered after `after`.
    pub fn after(&self, after: u64) -> Vec<LogLine> {
        self.lines.lock().map_or_else(
            |_| Vec::new(),
            |g| g.1.iter().filter(|l| l.seq > after).cloned().collect(),
        )
    }
}

/// The process's tail (the console's Log tab shows it).
pub fn tail() -> &'static LogTail {
    static TAIL_LINES: OnceLock<LogTail> = OnceLock::new();
    TAIL_LINES.get_or_init(LogTail::default)
}

/// A layer that copies WARN and ERROR events into [`tail`].
struct TailLayer;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for TailLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        tail().push(level.as_str(), event.metadata().target(), m.0);
    }
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn,vsa=info,vsa_appliance=info,vsa_actors=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(TailLayer)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded_and_numbered() {
        let t = LogTail::default();
        for i in 0..(TAIL + 10) {
            t.push("WARN", "x", format!("line {i}"));
        }
        let all = t.after(0);
        assert_eq!(all.len(), TAIL);
        assert_eq!(all[0].seq, 11);
        assert_eq!(all.last().map(|l| l.message.as_str()), Some("line 509"));
        assert_eq!(t.after(all[TAIL - 2].seq).len(), 1);
    }
}
