//! The real binary as a process (`strongroom serve` on a port of its own choosing, logging at trace
//! level to files), for tests that kill it with -9 or read its logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::ApiClient;
use super::db::TestDb;

/// The real binary, serving on a port of its own choosing, with every log line at trace level kept.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl ServerProcess {
    pub fn start(db: &TestDb, run: &str) -> Self {
        Self::start_with(db, run, &[])
    }

    /// Starts the binary with `env` added to its environment.
    pub fn start_with(db: &TestDb, run: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strongroom"));
        command.arg("serve");
        Self::start_command(db, run, env, command)
    }

    /// Starts the binary with `env`, allowed at most `descriptors` open files (through the shell's
    /// `ulimit`, as an operator would).
    pub fn start_with_descriptor_limit(
        db: &TestDb,
        run: &str,
        env: &[(&str, &str)],
        descriptors: u32,
    ) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("ulimit -n \"$0\" && exec \"$1\" serve")
            .arg(descriptors.to_string())
            .arg(env!("CARGO_BIN_EXE_strongroom"));
        Self::start_command(db, run, env, command)
    }

    fn start_command(db: &TestDb, run: &str, env: &[(&str, &str)], mut command: Command) -> Self {
        let stdout = db.dir.path().join(format!("{run}.stdout"));
        let stderr = db.dir.path().join(format!("{run}.stderr"));
        let child = command
            .env("STRONGROOM_DATA_DIR", db.dir.path())
            .env("STRONGROOM_DATABASE_URL", &db.url)
            .env("STRONGROOM_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "trace")
            .envs(env.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        let started = Instant::now();
        let base = loop {
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            if let Some(addr) = log
                .lines()
                .find(|l| l.contains("strongroom is serving"))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_owned)
                })
            {
                break format!("http://{addr}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            base,
            stdout,
            stderr,
        }
    }

    /// Starts the binary with stdout and stderr on `output` (say `/dev/full`, where nothing can be
    /// written), listening on a port chosen here (its log cannot tell), and waits until `/health`
    /// answers.
    pub fn start_with_output(db: &TestDb, env: &[(&str, &str)], output: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(output)
                .unwrap()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .arg("serve")
            .env("STRONGROOM_DATA_DIR", db.dir.path())
            .env("STRONGROOM_DATABASE_URL", &db.url)
            .env("STRONGROOM_LISTEN", &listen)
            .env("RUST_LOG", "trace")
            .envs(env.iter().copied())
            .stdout(Stdio::from(open()))
            .stderr(Stdio::from(open()))
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            base: format!("http://{listen}"),
            stdout: output.to_owned(),
            stderr: output.to_owned(),
        };
        let started = Instant::now();
        loop {
            let up = std::net::TcpStream::connect(&listen).is_ok();
            if up {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited at start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The default account's key, which the first start on a fresh database prints on stdout just after
    /// it logs that it serves (so a loaded machine may show the log line first: the key is waited for).
    pub fn default_api_key(&self) -> String {
        let started = Instant::now();
        loop {
            let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(key) = out.split_whitespace().find(|w| w.starts_with("sr_")) {
                return key.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no API key on stdout:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client for this process, calling with `key`.
    pub fn api(&self, key: &str) -> ApiClient {
        ApiClient::new(self.base.clone(), key.to_owned())
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process, as `kill -<signal>` would.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// What the process has logged on stderr so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until what the server logged so far is in its log file: it writes its log from a thread
    /// of its own, a few milliseconds after each line (for a test that reads, after a kill -9, the lines
    /// of its last requests).
    pub fn let_log_settle(&self) {
        std::thread::sleep(Duration::from_millis(100));
    }

    pub fn kill_9(mut self) -> (String, String) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (
            std::fs::read_to_string(&self.stdout).unwrap(),
            std::fs::read_to_string(&self.stderr).unwrap(),
        )
    }
}

/// A test that fails half-way does not leave its server running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A stopped process would not die of SIGKILL until continued on some systems' views of it.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
