//! Logging to stderr (text or JSON), filtered by `RUST_LOG`, and a panic hook that reports where a panic
//! happened but never its message, which could carry data.
//!
//! Logging can fail without harm: the log writer drops a line it cannot write (stderr on a full disk,
//! `/dev/full`, a closed pipe) and counts it, instead of returning an error that tracing-subscriber
//! would report with `eprint!` — which panics on a failed write, and inside the panic hook (which logs)
//! aborts the process. The count is readable (`dropped_log_lines`, shown by `/ready`) and is logged once
//! writing works again.
//!
//! The server (`serve`) logs through a thread of its own (`log-writer`): a line is appended to a buffer
//! in memory and the thread writes what gathered, every couple of milliseconds, in one `write`. A log
//! reader that stops reading (a full pipe, a paused terminal) then holds up that thread alone: the buffer
//! stops growing at `BACKLOG_CAP`, the lines past it are dropped and counted, and requests go on, where
//! a request thread blocked in `write` used to stop the API. `flush` writes out what is buffered; the
//! command line calls it before it exits.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::lock;

/// Log lines (writes) that could not be written since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// How many of those a later successful write has already reported.
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// How many log writes were dropped because they could not be written.
pub fn dropped_log_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes `bytes` (`lines` log lines) to `out`, ignoring (and counting) a failure; never panics.
fn write_or_count(out: &mut dyn Write, bytes: &[u8], lines: u64) -> bool {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(_) => {
            DROPPED.fetch_add(lines, Ordering::Relaxed);
            false
        }
    }
}

/// Writes `bytes` (`lines` log lines) to `out`; after a write that worked, reports the lines dropped
/// since the last report.
fn write_lines(out: &mut dyn Write, bytes: &[u8], lines: u64) {
    if !write_or_count(out, bytes, lines) {
        return;
    }
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
        if !write_or_count(out, note.as_bytes(), 1) {
            // Not reported after all: let a later write try again.
            REPORTED.fetch_min(reported, Ordering::Relaxed);
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
        write_lines(&mut self.out, buf, 1);
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

/// How much the background writer's buffer holds at most (some 5,000 request lines): past it, lines
/// are dropped and counted until the thread has written what it holds.
const BACKLOG_CAP: usize = 1 << 20;

/// How long the background writer lets lines gather after the first before it writes them: under load
/// one `write` and at most one wake-up of the thread for a few dozen request lines, rather than a wake-up
/// per line. (The `write` per request it takes off the request threads was 2.6% of the server's CPU
/// samples while tokenizing at 16 connections; interleaved runs showed no difference in CPU per token
/// beyond their spread either way.)
const GATHER: Duration = Duration::from_millis(2);

/// Log lines waiting for the background writer.
struct Backlog {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Held while lines taken from `queue` are written, so that lines are written in the order they
    /// were logged whoever writes them (the thread, or `flush`).
    output: Mutex<()>,
    cap: usize,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// How many writes (log lines) `bytes` holds.
    lines: u64,
    /// The thread waits for the next line, which must wake it.
    idle: bool,
}

impl Backlog {
    fn new(cap: usize) -> Self {
        Self {
            queue: Mutex::default(),
            ready: Condvar::new(),
            output: Mutex::new(()),
            cap,
        }
    }

    /// Queues one log line, or drops and counts it if the buffer is full.
    fn push(&self, line: &[u8]) {
        let mut queue = lock(&self.queue);
        if queue.bytes.len() + line.len() > self.cap {
            drop(queue);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.bytes.extend_from_slice(line);
        queue.lines += 1;
        if std::mem::take(&mut queue.idle) {
            self.ready.notify_one();
        }
    }

    /// Writes what is queued to `out` (`spare`, empty, takes its place in the queue).
    fn write_out(&self, spare: &mut Vec<u8>, out: &mut dyn Write) {
        let _turn = lock(&self.output);
        let lines = {
            let mut queue = lock(&self.queue);
            std::mem::swap(&mut queue.bytes, spare);
            std::mem::take(&mut queue.lines)
        };
        if !spare.is_empty() {
            write_lines(out, spare, lines);
        }
        spare.clear();
        // A burst (or a reader that stalled) may have grown it to the cap: do not keep that much.
        spare.shrink_to(64 * 1024);
    }

    /// The thread's loop: waits for a line, lets others gather for `gather`, writes them all.
    fn run(&self, out: &mut dyn Write, gather: Duration) {
        let mut spare = Vec::new();
        loop {
            {
                let mut queue = lock(&self.queue);
                while queue.bytes.is_empty() {
                    queue.idle = true;
                    queue = self
                        .ready
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            std::thread::sleep(gather);
            self.write_out(&mut spare, out);
        }
    }
}

/// The background writer, once `init` started it.
static BACKLOG: OnceLock<&'static Backlog> = OnceLock::new();

/// Starts the background writer's thread on stderr; `None` if the thread could not be made.
fn start_backlog() -> Option<&'static Backlog> {
    let backlog: &'static Backlog = Box::leak(Box::new(Backlog::new(BACKLOG_CAP)));
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || backlog.run(&mut std::io::stderr(), GATHER))
        .ok()?;
    let _ = BACKLOG.set(backlog);
    Some(backlog)
}

/// Writes out the lines the background writer holds, if it runs; returns once they are written (or
/// dropped and counted).
pub fn flush() {
    if let Some(backlog) = BACKLOG.get() {
        backlog.write_out(&mut Vec::new(), &mut std::io::stderr());
    }
}

/// Where log lines go: straight to stderr, or through the background writer.
#[derive(Clone, Copy)]
enum Sink {
    Direct(LossyWriter<fn() -> std::io::Stderr>),
    Background(&'static Backlog),
}

/// One event's writer, handed out by `Sink`.
enum SinkWrite {
    Direct(LossyWrite<std::io::Stderr>),
    Background(&'static Backlog),
}

impl Write for SinkWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Direct(out) => out.write(buf),
            Self::Background(backlog) => {
                backlog.push(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for Sink {
    type Writer = SinkWrite;

    fn make_writer(&self) -> SinkWrite {
        match self {
            Self::Direct(writer) => SinkWrite::Direct(writer.make_writer()),
            Self::Background(backlog) => SinkWrite::Background(backlog),
        }
    }
}

/// Logging to stderr at `RUST_LOG` (else `default_filter`); through the background writer if
/// `background` (the server), else straight (the short-lived commands, whose lines must be out
/// before the command's own output and exit).
pub fn init(format: LogFormat, default_filter: &str, background: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(background.then(start_backlog).flatten().map_or(
            Sink::Direct(LossyWriter::new(std::io::stderr as fn() -> _)),
            Sink::Background,
        ))
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
        // Queued like any other line: a flush here could block the panicking thread behind a stalled
        // log reader, and a caught panic (a request's) does not end the process.
        tracing::error!(%location, "panic (message withheld)");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no space left"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that keeps each `write` call's bytes, and can be made to block until let go.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<Mutex<()>>,
    }
    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = lock(&self.gate);
            lock(&self.writes).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Recorder {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.writes).concat()).unwrap()
        }
    }

    #[test]
    fn queued_lines_are_written_in_order_in_one_write() {
        let backlog = Backlog::new(1024);
        let mut out = Recorder::default();
        for n in 0..5 {
            backlog.push(format!("line {n}\n").as_bytes());
        }
        backlog.write_out(&mut Vec::new(), &mut out);
        // (Besides, perhaps, the note of lines other tests dropped.)
        let writes = out.writes.clone();
        let lines = || -> Vec<Vec<u8>> {
            let writes = lock(&writes);
            writes
                .iter()
                .filter(|w| !w.starts_with(b"strongroom:"))
                .cloned()
                .collect()
        };
        assert_eq!(
            lines(),
            [b"line 0\nline 1\nline 2\nline 3\nline 4\n".to_vec()]
        );
        // Nothing queued: nothing written.
        backlog.write_out(&mut Vec::new(), &mut out);
        assert_eq!(lines().len(), 1);
    }

    #[test]
    fn a_stalled_reader_holds_up_the_writer_thread_not_the_loggers() {
        let backlog: &'static Backlog = Box::leak(Box::new(Backlog::new(64)));
        let out = Recorder::default();
        let stalled = lock(&out.gate);
        let mut thread_out = out.clone();
        std::thread::spawn(move || backlog.run(&mut thread_out, Duration::from_millis(1)));
        // The thread takes this line and blocks writing it.
        backlog.push(b"first\n");
        let started = std::time::Instant::now();
        while !lock(&backlog.queue).bytes.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the thread never took the line"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Logging goes on while it is blocked: what fits is queued, the rest dropped and counted.
        let before = dropped_log_lines();
        for n in 0..20 {
            backlog.push(format!("line {n:02}\n").as_bytes());
        }
        assert_eq!(lock(&backlog.queue).lines, 8, "64 bytes hold 8 lines of 8");
        assert!(dropped_log_lines() >= before + 12);
        // Once the reader reads again, everything queued is written, in order (with, somewhere, the
        // note of the dropped lines, unless another test's write reported them first).
        drop(stalled);
        let started = std::time::Instant::now();
        while !out.text().contains("line 07") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}",
                out.text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let text = out.text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("strongroom:"))
            .collect();
        let expected: Vec<String> = std::iter::once("first".to_owned())
            .chain((0..8).map(|n| format!("line {n:02}")))
            .collect();
        assert_eq!(lines, expected);
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
