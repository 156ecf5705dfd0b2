//! The tidings reference server: the gateway plus the demo app, on SQLite with the
//! in-memory broker unless configured otherwise. See `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use serde::Deserialize;
use tidings::{Config, Db, Realtime, broker, config::JwtAlgorithm, demo};
use tracing_subscriber::EnvFilter;

/// Settings of the binary: where to listen and what to connect to, plus the library's
/// `Config` under `[realtime]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    bind: SocketAddr,
    database_url: String,
    broker_url: String,
    /// Where the Datastar demo page loads Datastar's browser bundle from.
    datastar_url: String,
    realtime: Config,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite:tidings.db".into(),
            broker_url: "memory".into(),
            datastar_url: demo::DEFAULT_DATASTAR_URL.into(),
            realtime: Config::default(),
        }
    }
}

const USAGE: &str = "usage: tidings [--config FILE]\n\
    Starts the reference server. Settings come from FILE (TOML) and TIDINGS_* \
    environment variables (which win); see docs/configuration.md.";

fn parse_args() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(args.next().context("--config needs a file")?.into())
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(config)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str, target: &mut T) -> anyhow::Result<()>
where
    T::Err: std::fmt::Display,
{
    if let Some(value) = env(name) {
        *target = value
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={value:?}: {e}"))?;
    }
    Ok(())
}

fn env_duration(name: &str, target: &mut Duration) -> anyhow::Result<()> {
    if let Some(value) = env(name) {
        *target = humantime::parse_duration(&value).with_context(|| {
            format!("{name}={value:?}: expected a duration such as 10s or 500ms")
        })?;
    }
    Ok(())
}

/// File first, then environment variables on top.
fn load_settings(file: Option<PathBuf>) -> anyhow::Result<Settings> {
    let mut s: Settings = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => Settings::default(),
    };
    env_parse("TIDINGS_BIND", &mut s.bind)?;
    if let Some(url) = env("TIDINGS_DATABASE_URL") {
        s.database_url = url;
    }
    if let Some(url) = env("TIDINGS_BROKER_URL") {
        s.broker_url = url;
    }
    if let Some(url) = env("TIDINGS_DATASTAR_URL") {
        s.datastar_url = url;
    }
    let c = &mut s.realtime;
    if let Some(secret) = env("TIDINGS_JWT_SECRET") {
        c.jwt.secret = Some(secret);
    }
    if let Some(path) = env("TIDINGS_JWT_PUBLIC_KEY_FILE") {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("TIDINGS_JWT_PUBLIC_KEY_FILE: reading {path}"))?;
        c.jwt.public_key_pem = Some(pem);
        // A public key means RS256 unless TIDINGS_JWT_ALGORITHM says ES256.
        if c.jwt.algorithm == JwtAlgorithm::HS256 {
            c.jwt.algorithm = JwtAlgorithm::RS256;
        }
    }
    if let Some(alg) = env("TIDINGS_JWT_ALGORITHM") {
        c.jwt.algorithm = match alg.as_str() {
            "HS256" => JwtAlgorithm::HS256,
            "RS256" => JwtAlgorithm::RS256,
            "ES256" => JwtAlgorithm::ES256,
            other => bail!("TIDINGS_JWT_ALGORITHM={other:?}: expected HS256, RS256 or ES256"),
        };
    }
    if let Some(iss) = env("TIDINGS_JWT_ISSUER") {
        c.jwt.issuer = Some(iss);
    }
    if let Some(aud) = env("TIDINGS_JWT_AUDIENCE") {
        c.jwt.audience = Some(aud);
    }
    env_duration("TIDINGS_JWT_LEEWAY", &mut c.jwt.leeway)?;
    if let Some(origins) = env("TIDINGS_ALLOWED_ORIGINS") {
        c.allowed_origins = origins
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
    }
    env_parse("TIDINGS_ALLOW_ANONYMOUS", &mut c.auth.allow_anonymous)?;
    env_parse("TIDINGS_ALLOW_QUERY_TOKEN", &mut c.auth.allow_query_token)?;
    env_duration("TIDINGS_AUTH_TIMEOUT", &mut c.auth.auth_timeout)?;
    env_duration("TIDINGS_REFRESH_NOTICE", &mut c.auth.refresh_notice)?;
    env_duration("TIDINGS_EXPIRY_GRACE", &mut c.auth.expiry_grace)?;
    env_duration("TIDINGS_PING_INTERVAL", &mut c.connection.ping_interval)?;
    env_duration("TIDINGS_PING_TIMEOUT", &mut c.connection.ping_timeout)?;
    env_parse(
        "TIDINGS_MAX_MESSAGE_SIZE",
        &mut c.connection.max_message_size,
    )?;
    env_parse(
        "TIDINGS_SEND_QUEUE_CAPACITY",
        &mut c.connection.send_queue_capacity,
    )?;
    env_parse("TIDINGS_MAX_CONNECTIONS", &mut c.connection.max_connections)?;
    env_parse("TIDINGS_REPLAY_CAP", &mut c.log.replay_cap)?;
    env_parse("TIDINGS_RING_CAPACITY", &mut c.log.ring_capacity)?;
    env_parse("TIDINGS_RETENTION", &mut c.log.retention)?;
    env_duration("TIDINGS_SHUTDOWN_TIMEOUT", &mut c.shutdown_timeout)?;
    if let Some(cookie) = env("TIDINGS_SSE_COOKIE") {
        c.sse.cookie_name = Some(cookie);
    }
    env_duration("TIDINGS_SSE_KEEP_ALIVE", &mut c.sse.keep_alive)?;
    env_parse("TIDINGS_SSE_QUEUE_CAPACITY", &mut c.sse.queue_capacity)?;
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut settings = load_settings(parse_args()?)?;

    let jwt = &settings.realtime.jwt;
    let demo_mode = jwt.secret.is_none() && jwt.public_key_pem.is_none();
    if demo_mode {
        // No key configured: mint our own, for the demo page only.
        settings.realtime.jwt.secret = Some(demo::random_secret());
        tracing::warn!(
            "DEMO MODE: no JWT key configured (TIDINGS_JWT_SECRET / TIDINGS_JWT_PUBLIC_KEY_FILE); \
             POST /demo/token and GET /datastar?sub= mint tokens for anyone. Configure a key for real use."
        );
        // The Datastar page signs in through the SSE cookie.
        let sse = &mut settings.realtime.sse;
        sse.cookie_name
            .get_or_insert_with(|| demo::DEMO_COOKIE.to_owned());
    }

    let db = Db::connect(&settings.database_url)
        .await
        .context("opening the database (TIDINGS_DATABASE_URL)")?;
    demo::migrate(&db)
        .await
        .context("migrating the demo tables")?;
    let broker = broker::from_url(
        &settings.broker_url,
        &broker::BrokerOptions::default()
            .with_memory_capacity(settings.realtime.log.ring_capacity.max(1024)),
    )?;
    let realtime = demo::configure(Realtime::builder(settings.realtime.clone(), db))
        .broker(broker)
        .build()
        .await?;

    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let addr = listener.local_addr()?;
    realtime.set_local_addr(addr);
    let demo_options = demo::DemoOptions {
        mint_secret: demo_mode
            .then(|| settings.realtime.jwt.secret.clone())
            .flatten(),
        datastar_url: settings.datastar_url.clone(),
    };
    let app = demo::router(&realtime, demo_options).merge(realtime.router());

    println!("tidings listening on http://{addr}");
    tracing::info!(%addr, database = scheme(&settings.database_url), broker = %settings.broker_url, "ready");

    let shutdown = realtime.shutdown_token();
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    });
    let deadline = settings.realtime.shutdown_timeout;
    let serving = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    // From the signal on, everything has `shutdown_timeout` to finish.
    let drained = tokio::time::timeout(deadline, async {
        let _ = serving.await;
        realtime.shutdown().await
    })
    .await;
    if !matches!(drained, Ok(true)) {
        tracing::warn!("shutdown deadline passed; exiting anyway");
    }
    Ok(())
}

fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or_default()
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
