//! The tidings reference server: the gateway plus the demo app, on SQLite with the
//! in-memory broker unless configured otherwise. See `docs/configuration.md`.
//!
//! A startup failure is printed as one line, `tidings: error: ` and its causes, and the
//! process exits with status 1.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use sqlx::{Connection, postgres::PgConnection};
use tidings::{
    Config, Db, DbOptions, Realtime, broker,
    config::{JwksConfig, JwtAlgorithm},
    demo,
};
use tracing_subscriber::EnvFilter;

/// How long the one direct attempt to reach a Postgres database may take.
const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the binary: where to listen and what to connect to, plus the library's
/// `Config` under `[realtime]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    bind: SocketAddr,
    database_url: String,
    /// The database pool's size; `None` keeps `Db`'s default.
    database_max_connections: Option<u32>,
    /// How long a SQLite writer waits for the write lock.
    #[serde(with = "humantime_serde")]
    sqlite_busy_timeout: Duration,
    broker_url: String,
    /// Where the Datastar demo page loads Datastar's browser bundle from.
    datastar_url: String,
    /// How long `/readyz` waits for the database.
    #[serde(with = "humantime_serde")]
    readiness_timeout: Duration,
    realtime: Config,
}

impl Settings {
    fn db_options(&self) -> DbOptions {
        let mut options = DbOptions::default();
        options.max_connections = self.database_max_connections;
        options.sqlite_busy_timeout = self.sqlite_busy_timeout;
        options
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite:tidings.db".into(),
            database_max_connections: DbOptions::default().max_connections,
            sqlite_busy_timeout: DbOptions::default().sqlite_busy_timeout,
            broker_url: "memory".into(),
            datastar_url: demo::DEFAULT_DATASTAR_URL.into(),
            readiness_timeout: demo::DEFAULT_READINESS_TIMEOUT,
            realtime: Config::default(),
        }
    }
}

const USAGE: &str = "usage: tidings [--config FILE] | tidings capture --model M --backend B\n\
    Starts the reference server, or prints the SQL that captures plain-SQL writes to a \
    demo table (see docs/models.md). Settings come from FILE (TOML) and TIDINGS_* \
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
            other => bail!("unknown argument {other:?} (see tidings --help)"),
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

/// A TOML error in one line: toml's own message quotes the offending line with a caret
/// underneath, which does not fit the one-line startup error.
fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> anyhow::Error {
    let place = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
        format!(" at line {line}, column {column}")
    });
    anyhow!(
        "cannot parse {}{}: {}",
        path.display(),
        place.unwrap_or_default(),
        error.message().trim()
    )
}

/// File first, then environment variables on top.
fn load_settings(file: Option<PathBuf>) -> anyhow::Result<Settings> {
    let mut s: Settings = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).map_err(|e| toml_error(&path, &text, &e))?
        }
        None => Settings::default(),
    };
    env_parse("TIDINGS_BIND", &mut s.bind)?;
    if let Some(url) = env("TIDINGS_DATABASE_URL") {
        s.database_url = url;
    }
    if env("TIDINGS_DATABASE_MAX_CONNECTIONS").is_some() {
        let mut max = 0;
        env_parse("TIDINGS_DATABASE_MAX_CONNECTIONS", &mut max)?;
        s.database_max_connections = Some(max);
    }
    env_duration("TIDINGS_SQLITE_BUSY_TIMEOUT", &mut s.sqlite_busy_timeout)?;
    if let Some(url) = env("TIDINGS_BROKER_URL") {
        s.broker_url = url;
    }
    if let Some(url) = env("TIDINGS_DATASTAR_URL") {
        s.datastar_url = url;
    }
    env_duration("TIDINGS_READINESS_TIMEOUT", &mut s.readiness_timeout)?;
    let c = &mut s.realtime;
    if let Some(secret) = env("TIDINGS_JWT_SECRET") {
        c.jwt.secret = Some(secret);
    }
    if let Some(path) = env("TIDINGS_JWT_PUBLIC_KEY_FILE") {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("TIDINGS_JWT_PUBLIC_KEY_FILE: reading {path}"))?;
        c.jwt.public_key_pem = Some(pem);
        // A public key means RS256 unless TIDINGS_JWT_ALGORITHM says ES256 or EdDSA.
        if c.jwt.algorithm == JwtAlgorithm::HS256 {
            c.jwt.algorithm = JwtAlgorithm::RS256;
        }
    }
    if let Some(alg) = env("TIDINGS_JWT_ALGORITHM") {
        c.jwt.algorithm = match alg.as_str() {
            "HS256" => JwtAlgorithm::HS256,
            "RS256" => JwtAlgorithm::RS256,
            "ES256" => JwtAlgorithm::ES256,
            "EdDSA" => JwtAlgorithm::EdDSA,
            other => {
                bail!("TIDINGS_JWT_ALGORITHM={other:?}: expected HS256, RS256, ES256 or EdDSA")
            }
        };
    }
    if let Some(iss) = env("TIDINGS_JWT_ISSUER") {
        c.jwt.issuer = Some(iss);
    }
    if let Some(aud) = env("TIDINGS_JWT_AUDIENCE") {
        c.jwt.audience = Some(aud);
    }
    env_duration("TIDINGS_JWT_LEEWAY", &mut c.jwt.leeway)?;
    // One key set from the environment; more in the TOML file ([[realtime.jwt.jwks]]).
    match (
        env("TIDINGS_JWKS_ISSUER"),
        env("TIDINGS_JWKS_FILE"),
        env("TIDINGS_JWKS_URL"),
    ) {
        (None, None, None) => {}
        (Some(issuer), Some(file), None) => c.jwt.jwks.push(JwksConfig::file(issuer, file)),
        (Some(issuer), None, Some(url)) => c.jwt.jwks.push(JwksConfig::url(issuer, url)),
        _ => {
            bail!("TIDINGS_JWKS_ISSUER needs exactly one of TIDINGS_JWKS_FILE and TIDINGS_JWKS_URL")
        }
    }
    env_duration(
        "TIDINGS_JWKS_REFRESH_INTERVAL",
        &mut c.jwt.jwks_refresh_interval,
    )?;
    env_duration(
        "TIDINGS_JWKS_MIN_REFETCH_INTERVAL",
        &mut c.jwt.jwks_min_refetch_interval,
    )?;
    env_duration("TIDINGS_JWKS_FETCH_TIMEOUT", &mut c.jwt.jwks_fetch_timeout)?;
    env_parse("TIDINGS_JWKS_MAX_BYTES", &mut c.jwt.jwks_max_bytes)?;
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
    env_parse(
        "TIDINGS_SEND_QUEUE_BYTES",
        &mut c.connection.send_queue_bytes,
    )?;
    env_parse("TIDINGS_MAX_CONNECTIONS", &mut c.connection.max_connections)?;
    env_duration("TIDINGS_WRITE_TIMEOUT", &mut c.connection.write_timeout)?;
    if env("TIDINGS_MAX_CONNECTION_AGE").is_some() {
        let mut age = Duration::ZERO;
        env_duration("TIDINGS_MAX_CONNECTION_AGE", &mut age)?;
        c.connection.max_connection_age = Some(age);
    }
    env_parse(
        "TIDINGS_RATE_LIMIT_TOLERANCE",
        &mut c.connection.rate_limit_tolerance,
    )?;
    env_parse(
        "TIDINGS_MAX_CONNECTIONS_PER_USER",
        &mut c.connection.max_connections_per_user,
    )?;
    env_parse(
        "TIDINGS_MAX_CONNECTIONS_PER_IP",
        &mut c.connection.max_connections_per_ip,
    )?;
    let t = &mut c.transport;
    env_duration("TIDINGS_HEADER_READ_TIMEOUT", &mut t.header_read_timeout)?;
    env_duration("TIDINGS_IDLE_TIMEOUT", &mut t.idle_timeout)?;
    env_parse("TIDINGS_MAX_HEADER_BYTES", &mut t.max_header_bytes)?;
    env_parse("TIDINGS_MAX_SOCKETS_PER_IP", &mut t.max_sockets_per_ip)?;
    env_parse(
        "TIDINGS_CONNECTS_PER_SECOND_PER_IP",
        &mut t.connects_per_second_per_ip,
    )?;
    env_parse("TIDINGS_MAX_TRACKED_KEYS", &mut t.max_tracked_keys)?;
    env_duration("TIDINGS_LIMITER_PRUNE_INTERVAL", &mut t.prune_interval)?;
    let p = &mut c.publish;
    env_parse(
        "TIDINGS_PUBLISH_MAX_PAYLOAD_BYTES",
        &mut p.max_payload_bytes,
    )?;
    env_parse(
        "TIDINGS_PUBLISH_EVENTS_PER_WINDOW",
        &mut p.events_per_window,
    )?;
    env_parse("TIDINGS_PUBLISH_BYTES_PER_WINDOW", &mut p.bytes_per_window)?;
    env_duration("TIDINGS_PUBLISH_WINDOW", &mut p.window)?;
    env_parse(
        "TIDINGS_MAX_FILTER_CONDITIONS",
        &mut c.connection.max_filter_conditions,
    )?;
    env_parse(
        "TIDINGS_MAX_FILTER_VALUES",
        &mut c.connection.max_filter_values,
    )?;
    env_parse(
        "TIDINGS_MAX_FILTER_BYTES",
        &mut c.connection.max_filter_bytes,
    )?;
    env_parse("TIDINGS_REPLAY_CAP", &mut c.log.replay_cap)?;
    env_parse("TIDINGS_RING_CAPACITY", &mut c.log.ring_capacity)?;
    env_parse("TIDINGS_RETENTION", &mut c.log.retention)?;
    env_parse("TIDINGS_RETENTION_BYTES", &mut c.log.retention_bytes)?;
    env_parse("TIDINGS_RING_MAX_BYTES", &mut c.log.ring_max_bytes)?;
    env_duration("TIDINGS_SEQUENCER_TIMEOUT", &mut c.log.sequencer_timeout)?;
    env_duration("TIDINGS_POLL_INTERVAL", &mut c.log.poll_interval)?;
    env_parse("TIDINGS_RELAY_BATCH", &mut c.log.relay_batch)?;
    env_duration("TIDINGS_RELAY_LINGER", &mut c.log.relay_linger)?;
    env_duration("TIDINGS_RELAY_SETTLE", &mut c.log.relay_settle)?;
    env_duration("TIDINGS_CATCH_UP_TIMEOUT", &mut c.log.catch_up_timeout)?;
    env_duration("TIDINGS_CATCH_UP_MAX_WAIT", &mut c.log.catch_up_max_wait)?;
    env_parse(
        "TIDINGS_CATCH_UP_MAX_EVENTS",
        &mut c.log.catch_up_max_events,
    )?;
    env_duration("TIDINGS_SHUTDOWN_TIMEOUT", &mut c.shutdown_timeout)?;
    if let Some(cookie) = env("TIDINGS_SSE_COOKIE") {
        c.sse.cookie_name = Some(cookie);
    }
    env_duration("TIDINGS_SSE_KEEP_ALIVE", &mut c.sse.keep_alive)?;
    env_parse("TIDINGS_SSE_QUEUE_CAPACITY", &mut c.sse.queue_capacity)?;
    if let Some(prefix) = env("TIDINGS_BROKER_PREFIX") {
        c.broker.channel_prefix = prefix;
    }
    let b = &mut c.broker;
    env_parse(
        "TIDINGS_BROKER_MEMORY_BUFFER_BYTES",
        &mut b.memory_buffer_bytes,
    )?;
    env_duration(
        "TIDINGS_BROKER_HEARTBEAT_INTERVAL",
        &mut b.heartbeat_interval,
    )?;
    env_duration("TIDINGS_BROKER_SILENCE_TIMEOUT", &mut b.silence_timeout)?;
    env_duration(
        "TIDINGS_BROKER_FALLBACK_POLL_INTERVAL",
        &mut b.fallback_poll_interval,
    )?;
    env_duration("TIDINGS_BROKER_RECONNECT_BACKOFF", &mut b.reconnect_backoff)?;
    env_duration(
        "TIDINGS_BROKER_RECONNECT_BACKOFF_MAX",
        &mut b.reconnect_backoff_max,
    )?;
    abuse_limits_from_env(&mut s.realtime)?;
    Ok(s)
}

/// Crates that log WebSocket frames, bearer tokens in `auth` frames included, at
/// trace level through the `log` crate (tungstenite: "Received message ..."). Their
/// records never reach the log, whatever `RUST_LOG` says: a filter could be
/// overridden by a more specific directive, an ignored crate cannot.
const FRAME_LOGGING_CRATES: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), with `log` records
/// forwarded except those of [`FRAME_LOGGING_CRATES`].
fn init_logging() {
    let forward_log = FRAME_LOGGING_CRATES
        .iter()
        .fold(tracing_log::LogTracer::builder(), |builder, name| {
            builder.ignore_crate(*name)
        });
    // Only fails when a logger is already set, which nothing in this binary does.
    let _ = forward_log.init();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The limits that keep one client's subscriptions and resumes from costing everyone
/// else (`docs/security.md`).
fn abuse_limits_from_env(c: &mut tidings::Config) -> anyhow::Result<()> {
    let conn = &mut c.connection;
    env_parse(
        "TIDINGS_MAX_GLOB_SUBSCRIPTIONS",
        &mut conn.max_glob_subscriptions,
    )?;
    env_parse(
        "TIDINGS_MAX_GLOB_SUBSCRIPTIONS_PER_USER",
        &mut conn.max_glob_subscriptions_per_user,
    )?;
    env_parse("TIDINGS_MAX_GLOBS_PER_NODE", &mut conn.max_globs_per_node)?;
    env_parse("TIDINGS_MAX_GLOB_WILDCARDS", &mut conn.max_glob_wildcards)?;
    env_parse("TIDINGS_MAX_GLOB_LENGTH", &mut conn.max_glob_length)?;
    let log = &mut c.log;
    env_parse("TIDINGS_RESUME_SCAN_BUDGET", &mut log.resume_scan_budget)?;
    env_duration("TIDINGS_RESUME_INTERVAL", &mut log.resume_interval)?;
    env_parse("TIDINGS_RESUME_BURST", &mut log.resume_burst)?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    // Printed by hand: returning the error from `main` would print its Debug form, with
    // a stack backtrace whenever RUST_BACKTRACE is set.
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tidings: error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("capture") {
        print!("{}", capture_command(&args[1..])?);
        return Ok(());
    }
    let mut settings = load_settings(parse_args()?)?;
    // Checked here too (the build checks again) so that a bad setting, a broker
    // prefix say, is reported as a setting before the broker or database is opened.
    settings.realtime.validate()?;
    let db_options = settings.db_options();
    db_options
        .validate()
        .context("invalid database_max_connections or sqlite_busy_timeout")?;

    // Parsing the broker URL first refuses it before anything touches the database.
    let broker = broker::from_url(
        &settings.broker_url,
        &broker::BrokerOptions::default()
            .with_channel_prefix(settings.realtime.broker.channel_prefix.clone())
            .with_memory_capacity(settings.realtime.log.ring_capacity.max(1024))
            .with_memory_buffer_bytes(settings.realtime.broker.memory_buffer_bytes),
    )
    .with_context(|| {
        format!(
            "cannot use the broker at {}",
            redact_url(&settings.broker_url)
        )
    })?;

    let jwt = &settings.realtime.jwt;
    let demo_mode = jwt.secret.is_none() && jwt.public_key_pem.is_none() && jwt.jwks.is_empty();
    if demo_mode {
        // No key configured: mint our own, for the demo page only.
        settings.realtime.jwt.secret = Some(demo::random_secret());
        // The Datastar page signs in through the SSE cookie.
        let sse = &mut settings.realtime.sse;
        sse.cookie_name
            .get_or_insert_with(|| demo::DEMO_COOKIE.to_owned());
    }

    let database = redact_url(&settings.database_url);
    let db = open_database(&settings.database_url, &db_options)
        .await
        .with_context(|| format!("cannot open the database at {database}"))?;
    demo::migrate(&db)
        .await
        .with_context(|| format!("cannot create the demo tables in {database}"))?;
    let realtime = demo::configure(Realtime::builder(settings.realtime.clone(), db))
        .broker(broker)
        .build()
        .await
        .context("cannot start the gateway")?;

    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    realtime.set_local_addr(addr);
    let demo_options = demo::DemoOptions {
        mint_secret: demo_mode
            .then(|| settings.realtime.jwt.secret.clone())
            .flatten(),
        datastar_url: settings.datastar_url.clone(),
        readiness_timeout: settings.readiness_timeout,
    };
    let app = demo::router(&realtime, demo_options).merge(realtime.router());

    // Logged once serving, so a failed start prints only its error.
    if demo_mode {
        tracing::warn!(
            "DEMO MODE: no JWT key configured (TIDINGS_JWT_SECRET / TIDINGS_JWT_PUBLIC_KEY_FILE); \
             POST /demo/token and GET /datastar?sub= mint tokens for anyone. Configure a key for real use."
        );
    }
    println!("tidings listening on http://{addr}");
    tracing::info!(
        %addr,
        database = scheme(&settings.database_url),
        broker = %redact_url(&settings.broker_url),
        "ready"
    );

    let shutdown = realtime.shutdown_token();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    });
    let deadline = settings.realtime.shutdown_timeout;
    // The gateway's accept loop: header-read and idle timeouts, sockets and connects
    // per address (docs/security.md). It stops accepting when shutdown begins.
    let serving = tokio::spawn({
        let realtime = realtime.clone();
        async move { realtime.serve(listener, app).await }
    });
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

const CAPTURE_USAGE: &str = "usage: tidings capture --model todos|notes --backend postgres|sqlite";

/// `tidings capture --model M --backend B`: the SQL that installs capture on a demo
/// table, to commit as a migration (see docs/models.md).
fn capture_command(args: &[String]) -> anyhow::Result<String> {
    let (mut model, mut backend) = (None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--model" => &mut model,
            "--backend" => &mut backend,
            other => bail!("unknown argument {other:?}; {CAPTURE_USAGE}"),
        };
        *slot = Some(
            args.next()
                .with_context(|| format!("{arg} needs a value; {CAPTURE_USAGE}"))?,
        );
    }
    let (Some(model), Some(backend)) = (model, backend) else {
        bail!("{CAPTURE_USAGE}");
    };
    let backend: tidings::capture::Backend = backend.parse()?;
    demo::capture_sql(model, backend)
        .with_context(|| {
            format!(
                "unknown model {model:?}: expected one of {}",
                demo::MODELS.join(", ")
            )
        })?
        .map_err(Into::into)
}

/// Opens the pool, after one direct connection attempt for Postgres: the pool retries a
/// refused connection for 30 seconds and then reports only "pool timed out", which
/// hides why the database cannot be reached.
async fn open_database(url: &str, options: &DbOptions) -> anyhow::Result<Db> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let probe = tokio::time::timeout(DATABASE_PROBE_TIMEOUT, PgConnection::connect(url))
            .await
            .map_err(|_| {
                anyhow!(
                    "no answer within {}",
                    humantime::format_duration(DATABASE_PROBE_TIMEOUT)
                )
            })??;
        // Only the attempt mattered; a failed goodbye changes nothing.
        let _ = probe.close().await;
    }
    Ok(Db::connect_with(url, options).await?)
}

/// The error and its causes on one line, like `{:#}`, but without repeats: many errors
/// (sqlx's, thiserror's `{0}` wrappers) print their source and also return it from
/// `source()`, which `{:#}` would print twice.
fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = one_line(&cause.to_string());
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `message` on one line: some causes (a database server's detail) span several.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `url` with its password, in the user part or a `password=` parameter, replaced by
/// `***`: URLs appear in error messages and logs, passwords must not.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_passwords_only() {
        for (url, shown) in [
            (
                "postgres://app:hunter2@db:5432/app",
                "postgres://app:***@db:5432/app",
            ),
            ("postgres://app@db/app", "postgres://app@db/app"),
            ("postgresql://a:p@w@db", "postgresql://a:***@db"),
            (
                "postgres://db/app?user=app&password=hunter2&sslmode=require",
                "postgres://db/app?user=app&password=***&sslmode=require",
            ),
            ("redis://:hunter2@cache:6379", "redis://:***@cache:6379"),
            ("sqlite:tidings.db", "sqlite:tidings.db"),
            ("memory", "memory"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn toml_errors_fit_on_one_line() {
        let text = "bind = \"127.0.0.1:0\"\nnonsense = 1\n";
        let error = toml::from_str::<Settings>(text).unwrap_err();
        let message = toml_error(Path::new("tidings.toml"), text, &error).to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with(
                "cannot parse tidings.toml at line 2, column 1: unknown field `nonsense`"
            ),
            "{message}"
        );
    }

    #[test]
    fn describe_prints_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = anyhow::Error::new(sqlx::Error::Io(io)).context("cannot open the database");
        assert_eq!(
            describe(&error),
            "cannot open the database: error communicating with database: connection refused"
        );
    }

    #[test]
    fn one_line_joins_multi_line_causes() {
        assert_eq!(one_line("a: b\n  detail\n\nmore"), "a: b detail more");
    }
}
