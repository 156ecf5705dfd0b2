//! Broker servers a test owns: a private `redis-server` or `nats-server` on a free port,
//! or a killable TCP proxy in front of the tests' Postgres (for LISTEN/NOTIFY), each
//! killed and started again on the same port at will, and stopped by a drop guard,
//! panics included. The machine's shared servers are never touched.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use super::db::postgres_url;

/// Bound on a server or proxy listening after a (re)start.
const STARTUP: Duration = Duration::from_secs(30);
/// How often a condition with a deadline is checked.
const POLL: Duration = Duration::from_millis(20);

/// The broker between the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// `memory`: no broker between processes; every node learns of the others'
    /// events by polling the log.
    Memory,
    /// A private `redis-server` on a free port.
    Redis,
    /// A private `nats-server` on a free port.
    Nats,
    /// LISTEN/NOTIFY on the tests' Postgres, reached through a TCP proxy of this
    /// cluster's own, so that killing the proxy is a broker outage while the event
    /// log's connections go on.
    Postgres,
}

/// A free TCP port on 127.0.0.1 (free when asked; servers are started right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

pub async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + STARTUP;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {STARTUP:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `url` with its `host:port` replaced by `authority`.
pub fn with_authority(url: &str, authority: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let (userinfo_host, path) = rest.split_at(path_start);
    let userinfo = userinfo_host
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"));
    format!(
        "{scheme}://{}{authority}{path}",
        userinfo.unwrap_or_default()
    )
}

/// A TCP forwarder that can be killed (every connection dropped, the port closed)
/// and started again on the same port.
struct TcpProxy {
    port: u16,
    upstream: (String, u16),
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    async fn start(port: u16, upstream: (String, u16)) -> Self {
        let mut proxy = Self {
            port,
            upstream,
            task: None,
        };
        proxy.listen().await;
        proxy
    }

    async fn listen(&mut self) {
        let deadline = Instant::now() + STARTUP;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot bind the proxy to port {}: {e}",
                        self.port
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task: aborting it cuts every forwarded connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let upstream = upstream.clone();
                        connections.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        }));
    }

    async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The cluster's broker: a server process or proxy of its own, or nothing (memory).
pub struct BrokerServer {
    kind: BrokerKind,
    port: u16,
    process: Option<Child>,
    proxy: Option<TcpProxy>,
}

impl BrokerServer {
    /// Starts a broker of `kind` that no other test uses.
    pub async fn start(kind: BrokerKind) -> Self {
        let mut server = Self {
            kind,
            port: free_port(),
            process: None,
            proxy: None,
        };
        server.restart().await;
        server
    }

    /// The URL the nodes get as `TIDINGS_BROKER_URL`.
    pub fn url(&self) -> String {
        match self.kind {
            BrokerKind::Memory => "memory".to_owned(),
            BrokerKind::Redis => format!("redis://127.0.0.1:{}", self.port),
            BrokerKind::Nats => format!("nats://127.0.0.1:{}", self.port),
            BrokerKind::Postgres => {
                with_authority(&postgres_url(), &format!("127.0.0.1:{}", self.port))
            }
        }
    }

    /// Kills the broker: SIGKILL for a server, every connection cut and the port
    /// closed for the proxy.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.kill().await;
        }
    }

    /// Starts the broker again on the same port (or for the first time).
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        match self.kind {
            BrokerKind::Memory => {}
            BrokerKind::Redis => {
                let args = [
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ];
                self.spawn("redis-server", &args).await;
            }
            BrokerKind::Nats => {
                self.spawn("nats-server", &["-a", "127.0.0.1", "-p", &port])
                    .await
            }
            BrokerKind::Postgres => match self.proxy.as_mut() {
                Some(proxy) => proxy.listen().await,
                None => {
                    let target: sqlx::postgres::PgConnectOptions = postgres_url()
                        .parse()
                        .expect("DATABASE_URL is a Postgres URL");
                    let upstream = (target.get_host().to_owned(), target.get_port());
                    self.proxy = Some(TcpProxy::start(self.port, upstream).await);
                }
            },
        }
    }

    async fn spawn(&mut self, program: &str, args: &[&str]) {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} (is it installed?): {e}"));
        self.process = Some(child);
        wait_listening(self.port, program).await;
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
