//! A child process of the orchestrator (a server or the load generator), optionally
//! pinned to one CPU, spoken to in lines over stdin and stdout.

use std::{
    io::{BufRead, BufReader, Write},
    process::{ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub struct Child {
    name: &'static str,
    process: std::process::Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

/// Whether `taskset` can pin children here; looked up once.
pub fn taskset_available() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Child {
    /// Starts `program` with `envs`, on `cpu` only when given (via `taskset`, which
    /// execs the program, so the pid read from `/proc` is the program's own).
    pub fn spawn(
        name: &'static str,
        program: &str,
        cpu: Option<usize>,
        envs: &[(&str, String)],
    ) -> Self {
        let mut command = match cpu.filter(|_| taskset_available()) {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut process = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {name} ({program}): {e}"));
        let stdin = process.stdin.take().expect("piped stdin");
        let stdout = process.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        // A reader thread, so every wait below can have a deadline.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            process,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("{} child: write {line:?}: {e}", self.name));
    }

    /// The rest of the next line whose first word is `keyword`; other lines are
    /// echoed to stderr.
    pub fn expect(&mut self, keyword: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} child: no {keyword:?} line within {timeout:?}",
                        self.name
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} child ended while waiting for {keyword:?}", self.name)
                }
            };
            let (head, rest) = line.split_once(' ').unwrap_or((&line, ""));
            if head == keyword {
                return rest.to_owned();
            }
            eprintln!("{}: {line}", self.name);
        }
    }

    /// Asks the child to quit and waits for it, at most `timeout`; kills it after.
    pub fn quit(mut self, timeout: Duration) {
        // A child that does not read stdin (the reference server) just gets killed.
        let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // `Drop` kills it.
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Never leave a server or 10,000 sockets behind.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
