//! A Postgres server of one test's own, for the tests that crash the database: a
//! cluster made by `initdb` in a temporary directory, on a free port, started and
//! stopped with `pg_ctl`. The machine's shared Postgres is never touched.
//!
//! A crash is `pg_ctl stop -m immediate`: every server process quits at once, without
//! writing what is left in its shared WAL buffers, and the next start replays the WAL
//! as after a power cut (PostgreSQL's own recovery tests crash it the same way). WAL
//! already handed to the kernel survives it, as it would not survive a power cut, so
//! a test that needs a loss checks that the WAL it expects to lose was still in the
//! buffers ([`PrivatePostgres::unwritten_wal`]).
//!
//! The binaries come from `pg_config --bindir` (Debian's `postgresql` package puts
//! them outside `PATH`). `initdb` refuses to run as root, so as root every command
//! runs as the `postgres` user, which the package creates.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sqlx::PgPool;

use super::{brokers::free_port, server::WAIT};

/// A running private Postgres; stopped (immediately) and removed on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run as this user (`postgres` when the test runs as root).
    user: Option<String>,
}

impl PrivatePostgres {
    /// A fresh cluster, started. The WAL writer wakes as rarely as it can (every
    /// 10 s), so that an asynchronous commit stays in the WAL buffers long enough for
    /// a test to crash the server before it is written; checkpoints and autovacuum
    /// are off for the same reason.
    pub fn start() -> Self {
        let bin = bindir();
        let dir =
            std::env::temp_dir().join(format!("tidings-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("private Postgres dir");
        // Owned by the value from here on, so its drop removes the directory even if
        // a step below panics.
        let postgres = Self {
            bin,
            dir,
            port: free_port(),
            user: running_as_root().then(|| "postgres".to_owned()),
        };
        if let Some(user) = &postgres.user {
            chown(&postgres.dir, user);
        }
        let data = postgres.data();
        postgres.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let settings = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             wal_writer_delay = '10s'\nwal_writer_flush_after = '1GB'\n\
             checkpoint_timeout = '1h'\nautovacuum = off\nfsync = on\n",
            postgres.port
        );
        let conf = Path::new(&data).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("postgresql.conf");
        postgres.restart();
        postgres
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A pool of its own on the server.
    pub async fn pool(&self) -> PgPool {
        tokio::time::timeout(WAIT, PgPool::connect(&self.url()))
            .await
            .expect("connecting to the private Postgres timed out")
            .expect("connecting to the private Postgres")
    }

    /// Starts the server (again) and waits until it accepts connections, after the
    /// recovery a crash calls for.
    pub fn restart(&self) {
        let data = self.data();
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        );
    }

    /// Crashes the server: every process quits at once, what is left in its WAL
    /// buffers is lost.
    pub fn crash(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Whether WAL was inserted that the server has not handed to the kernel yet, as
    /// `pool` sees it (a query that writes nothing, so it flushes nothing).
    pub async fn unwritten_wal(pool: &PgPool) -> bool {
        sqlx::query_scalar("SELECT pg_current_wal_lsn() < pg_current_wal_insert_lsn()")
            .fetch_one(pool)
            .await
            .expect("reading the WAL positions")
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs the Postgres program `name` with `args` (as the cluster's user), and
    /// panics with its output unless it succeeds.
    fn run(&self, name: &str, args: &[&str]) {
        let output = self
            .command(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {name}: {e}"));
        assert!(
            output.status.success(),
            "{name} {args:?} failed: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The Postgres program `name`, to be run as the cluster's user.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        // Fails harmlessly when a crash the test did not follow with a restart
        // stopped it already.
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `initdb` and `pg_ctl` live: `pg_config --bindir`.
fn bindir() -> PathBuf {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config (the postgresql package) is needed for the private Postgres");
    assert!(output.status.success(), "pg_config --bindir failed");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Hands `dir` to `user`, for `initdb` run as that user.
fn chown(dir: &Path, user: &str) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {user} to run Postgres as"))
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g"))).expect("chown");
}
