//! Logging to stderr (text or JSON), filtered by `RUST_LOG`, and a panic hook that reports where a panic
//! happened but never its message, which could carry data.
//!
//! Logging can fail without harm: the log writer drops a line it cannot write (stderr on a full disk,
//! `/dev/full`, a closed pipe) and counts it, instead of returning an error that tracing-subscriber
//! would report with `eprint!` — which panics on a failed write, and inside the panic hook (which logs)
//! aborts the process. The count is readable (`dropped_log_lines`, shown by `/ready`) and is logged once
//! writing works again.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Log lines (writes) that could not be written since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// How many of those a later successful write has already reported.
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// How many log writes were dropped because they could not be written.
pub fn dropped_log_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes `bytes` to `out`, ignoring (and counting) a failure; never panics.
fn write_or_count(out: &mut dyn Write, bytes: &[u8]) -> bool {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(_) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Prints `text` on stdout, ignoring a failed write (unlike `println!`, which panics).
pub fn print_out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    let _ = std::io::stdout().lock().flush();
}

/// Prints `text` on stderr, ignoring a failed write (unlike `eprintln!`, which panics).
pub fn print_err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A `MakeWriter` over a sink (stderr in the server) whose writes never fail: what cannot be written
/// is dropped and counted.
#[derive(Clone, Copy)]
pub struct LossyWriter<F> {
    sink: F,
}

impl<F, W> LossyWriter<F>
where
    F: Fn() -> W,
    W: Write,
{
    pub fn new(sink: F) -> Self {
        Self { sink }
    }
}

/// One event's writer, handed out by `LossyWriter`.
pub struct LossyWrite<W> {
    out: W,
}

impl<W: Write> Write for LossyWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if write_or_count(&mut self.out, buf) {
            let dropped = DROPPED.load(Ordering::Relaxed);
            let reported = REPORTED.load(Ordering::Relaxed);
            if dropped > reported
                && REPORTED
                    .compare_exchange(reported, dropped, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let note = format!(
                    "strongroom: {} log line(s) could not be written and were dropped ({dropped} since start)\n",
                    dropped - reported
                );
                if !write_or_count(&mut self.out, note.as_bytes()) {
                    // Not reported after all: let a later write try again.
                    REPORTED.fetch_min(reported, Ordering::Relaxed);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, F, W> MakeWriter<'a> for LossyWriter<F>
where
    F: Fn() -> W + 'static,
    W: Write,
{
    type Writer = LossyWrite<W>;

    fn make_writer(&'a self) -> Self::Writer {
        LossyWrite { out: (self.sink)() }
    }
}

pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyWriter::new(std::io::stderr))
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic (message withheld)");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no space left"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_is_dropped_and_counted() {
        let before = dropped_log_lines();
        let writer = LossyWriter::new(|| Full);
        let mut w = writer.make_writer();
        assert_eq!(w.write(b"a line\n").unwrap(), 7);
        assert!(dropped_log_lines() > before);
    }
}
