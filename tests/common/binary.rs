//! The reference binary as a child process of a test: a fresh working directory, a
//! clean environment, and the URL from its "listening on" line.

use std::{path::PathBuf, process::Stdio};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use super::server::WAIT;

/// A directory of its own, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("tidings-bin-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `tidings` binary; killed on drop.
pub struct Binary {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub dir: TempDir,
}

impl Binary {
    /// Starts the binary in `dir` with only `PATH`, `TIDINGS_BIND=127.0.0.1:0` and
    /// `env` set, its stderr to `stderr`; waits for its URL line.
    pub async fn start(dir: TempDir, env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
        command
            .current_dir(&dir.0)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TIDINGS_BIND", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn tidings");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.split("listening on ").nth(1) {
                    return url.trim().to_owned();
                }
            }
            panic!("the server exited before listening")
        })
        .await
        .expect("the server did not print its URL");
        Self { child, base, dir }
    }

    /// `ws://.../realtime/subscribe`.
    pub fn ws_url(&self) -> String {
        format!(
            "{}/realtime/subscribe",
            self.base.replace("http://", "ws://")
        )
    }
}
