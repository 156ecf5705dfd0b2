//! Typed configuration. Every field documents its default; `Config::validate` checks the
//! whole thing once, at startup, so nothing downstream re-checks it.
//!
//! The library never reads environment variables: the binary (`main.rs`) turns its
//! environment and TOML file into a `Config`.

use std::time::Duration;

use serde::Deserialize;

/// All settings of a tidings node. Every field has a documented default; start from
/// [`Config::default`] and change what you need (the reference server also reads a
/// TOML file and `TIDINGS_*` variables into it, see `docs/configuration.md`).
///
/// ```
/// use std::time::Duration;
///
/// let mut config = tidings::Config::default();
/// config.jwt.secret = Some("a secret of at least thirty-two bytes".into());
/// config.connection.max_subscriptions = 50;
/// config.auth.refresh_notice = Duration::from_secs(60);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// JWT verification. Default: no key (only anonymous connections, if allowed).
    pub jwt: JwtConfig,
    /// Handshake and token lifetime settings.
    pub auth: AuthConfig,
    /// Exact browser origins allowed to open a WebSocket. Default: empty, meaning the
    /// server's own origins (`http://<bind address>`, `http://localhost:<port>`) when
    /// the local address is known, else the request's own `Host`.
    pub allowed_origins: Vec<String>,
    /// Per-connection limits and heartbeat.
    pub connection: ConnectionConfig,
    /// Event log, ring and resume.
    pub log: LogConfig,
    /// Broker health: heartbeats, silence, the fallback poll, reconnects.
    pub broker: BrokerConfig,
    /// Datastar SSE bridge.
    pub sse: SseConfig,
    /// Who is subscribed to which topic, across nodes.
    pub presence: PresenceConfig,
    /// Limits before a request becomes a WebSocket or SSE stream, applied by
    /// [`Realtime::serve`](crate::Realtime::serve): timeouts, sockets and connects
    /// per IP address.
    pub transport: TransportConfig,
    /// What clients may publish: payload size and a quota per user.
    pub publish: PublishConfig,
    /// The app's handlers for client events: how long a call may take, how many may
    /// wait per connection.
    pub handlers: HandlersConfig,
    /// How long graceful shutdown may take. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            jwt: JwtConfig::default(),
            auth: AuthConfig::default(),
            allowed_origins: Vec::new(),
            connection: ConnectionConfig::default(),
            log: LogConfig::default(),
            broker: BrokerConfig::default(),
            sse: SseConfig::default(),
            presence: PresenceConfig::default(),
            transport: TransportConfig::default(),
            publish: PublishConfig::default(),
            handlers: HandlersConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The signature algorithm accepted. It comes from configuration, never from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (default).
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256, public key in PEM.
    RS256,
    /// ECDSA P-256 with SHA-256, public key in PEM.
    ES256,
    /// Ed25519 (EdDSA), public key in PEM.
    EdDSA,
}

/// A JSON Web Key Set: public keys chosen by a token's `kid`, for tokens of one issuer.
/// A token is checked against a set only if its `iss` is the set's issuer and its
/// `alg` is one of the set's algorithms; only then is its `kid` looked up, and only an
/// unknown `kid` makes the set be read again (at most every
/// `jwt.jwks_min_refetch_interval`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// The `iss` of the tokens these keys sign; required in those tokens.
    pub issuer: String,
    /// A file holding the set (`{"keys":[...]}`). Exactly one of `file` and `url`.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// An `http://` or `https://` URL serving the set. Exactly one of `file` and
    /// `url`. Needs the `jwks-url` feature (on by default).
    #[serde(default)]
    pub url: Option<String>,
    /// Algorithms accepted from this issuer: asymmetric ones only (a key set is
    /// public). Default: RS256, ES256, EdDSA.
    #[serde(default = "JwksConfig::default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
}

impl JwksConfig {
    fn default_algorithms() -> Vec<JwtAlgorithm> {
        vec![
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ]
    }

    /// A set read from `file`, for tokens of `issuer`, with the default algorithms.
    pub fn file(issuer: impl Into<String>, file: impl Into<std::path::PathBuf>) -> Self {
        Self {
            issuer: issuer.into(),
            file: Some(file.into()),
            url: None,
            algorithms: Self::default_algorithms(),
        }
    }

    /// A set fetched from `url`, for tokens of `issuer`, with the default algorithms.
    pub fn url(issuer: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            file: None,
            url: Some(url.into()),
            algorithms: Self::default_algorithms(),
        }
    }
}

/// How tokens are verified.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Algorithm. Default: HS256.
    pub algorithm: JwtAlgorithm,
    /// Shared secret for HS256. Default: none.
    pub secret: Option<String>,
    /// PEM public key for RS256 / ES256. Default: none.
    pub public_key_pem: Option<String>,
    /// Required `iss`, when set. Default: not checked.
    pub issuer: Option<String>,
    /// Required `aud`, when set. Default: not checked (tokens with an `aud` accepted).
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, at most 30 s. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Key sets by issuer (`[[realtime.jwt.jwks]]` in TOML), besides or instead of
    /// the one key above. Default: none.
    pub jwks: Vec<JwksConfig>,
    /// How often every key set is read again. Default: 10 min.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// A token with an unknown `kid` makes its set be read again, at most this often.
    /// Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub jwks_min_refetch_interval: Duration,
    /// How long fetching a key set from a URL may take. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub jwks_fetch_timeout: Duration,
    /// Largest key set document in bytes. Default: 262144.
    pub jwks_max_bytes: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::default(),
            secret: None,
            public_key_pem: None,
            issuer: None,
            audience: None,
            // Clocks of token issuers and nodes drift by a few seconds; without a
            // leeway a fresh token can look "not yet valid".
            leeway: Duration::from_secs(5),
            jwks: Vec::new(),
            jwks_refresh_interval: Duration::from_secs(600),
            jwks_min_refetch_interval: Duration::from_secs(30),
            jwks_fetch_timeout: Duration::from_secs(5),
            jwks_max_bytes: 256 * 1024,
        }
    }
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_pem", &self.public_key_pem.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("jwks", &self.jwks)
            .field("jwks_refresh_interval", &self.jwks_refresh_interval)
            .field("jwks_min_refetch_interval", &self.jwks_min_refetch_interval)
            .field("jwks_fetch_timeout", &self.jwks_fetch_timeout)
            .field("jwks_max_bytes", &self.jwks_max_bytes)
            .finish()
    }
}

/// Handshake and token lifetime.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accept `{"type":"auth","token":null}`; anonymous principals read public
    /// collections only. Default: false.
    pub allow_anonymous: bool,
    /// Accept `?token=` on the upgrade URL (never logged). Default: false.
    pub allow_query_token: bool,
    /// Time allowed for the first `auth` frame. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// `refresh_required` is sent this long before `exp`. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub refresh_notice: Duration,
    /// A connection whose token expired is closed 4001 after this grace. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub expiry_grace: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_anonymous: false,
            allow_query_token: false,
            auth_timeout: Duration::from_secs(10),
            refresh_notice: Duration::from_secs(30),
            expiry_grace: Duration::from_secs(10),
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Largest accepted client frame in bytes; larger closes 1009. Default: 65536.
    pub max_message_size: usize,
    /// Outbound frames queued per connection before it is closed 4008. Default: 1024.
    pub send_queue_capacity: usize,
    /// Outbound bytes queued per WebSocket connection (events not yet taken by its
    /// socket) before it is closed 4008. Default: 1 MiB.
    pub send_queue_bytes: usize,
    /// Subscriptions per connection. Default: 100.
    pub max_subscriptions: usize,
    /// Server ping interval. Default: 25 s.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A peer that has not answered a ping (or sent anything) within this is closed.
    /// Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Client frames per second allowed per connection (burst = 2x). Default: 100.
    pub messages_per_second: u32,
    /// Bad frames (malformed, refused, binary) tolerated before closing 4400.
    /// Default: 100.
    pub misuse_limit: u32,
    /// Frames refused for exceeding `messages_per_second` tolerated before closing
    /// 4029 ("back off"): a burst costs a few refusals, sustained flooding a close.
    /// Default: 100.
    pub rate_limit_tolerance: u32,
    /// How long one write to a client may wait for its socket (a WebSocket frame or
    /// batch, an SSE chunk). A client that stops reading is closed after it: 4008 on
    /// WebSocket, the end of the stream on SSE. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Connections older than this are asked to reconnect with close 1012 (clients
    /// resume without a gap), which spreads load after a deploy and bounds how long a
    /// connection lives on old state. Each connection's age is shortened by up to 10%
    /// at random so they do not all leave at once. Default: none (no limit).
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// Open WebSocket connections per node; more are closed 4029 right after the
    /// upgrade (the protocol's answer). Datastar SSE streams count separately against
    /// the same number (HTTP 429). A semaphore permit held by each connection, so it
    /// is never exceeded. Default: 10000.
    pub max_connections: usize,
    /// Open WebSocket connections and SSE streams (together) per user (`sub`); more
    /// are refused with HTTP 429 when the user is known before the upgrade (bearer
    /// header, SSE), else closed 4029 at the `auth` frame. Default: 10000, the node's
    /// capacity (see `docs/security.md`, "Defaults sized for a proxy"); lower it when
    /// users should not hold many tabs or devices at once.
    pub max_connections_per_user: usize,
    /// Open WebSocket connections and SSE streams (together) per client IP address;
    /// more are refused with HTTP 429. Needs the peer address, which
    /// [`Realtime::serve`](crate::Realtime::serve) provides. Default: 10000, so one
    /// reverse proxy (one address for every client) can fill the node; lower it when
    /// clients connect directly.
    pub max_connections_per_ip: usize,
    /// WebSocket read buffer in bytes: allocated for every connection for its whole
    /// life, and what one read takes at most. Client frames are small (an `auth` with
    /// its token, a `subscribe`), so 1 KiB holds them; a larger frame grows the buffer
    /// for as long as it takes to read it. Default: 1024.
    pub read_buffer_size: usize,
    /// WebSocket write buffer in bytes. Default: 4096.
    pub write_buffer_size: usize,
    /// Glob subscriptions (a `*`, `?`, `[...]` or `{...}` on either side of the
    /// pattern, other than a lone `*`) per connection or SSE stream; more are refused
    /// with `limit_exceeded`. Globs cost every event a match, exact patterns do not.
    /// Default: 20.
    pub max_glob_subscriptions: usize,
    /// Glob subscriptions of one user across all their connections and streams on
    /// this node (anonymous connections count per connection only). Default: 100.
    pub max_glob_subscriptions_per_user: usize,
    /// Distinct glob patterns on this node: the node's matching budget. Identical
    /// patterns share one compiled matcher and count once; a new distinct glob past
    /// this is refused (`limit_exceeded`) rather than slowing every event's fan-out.
    /// Default: 1000.
    pub max_globs_per_node: usize,
    /// Wildcards (`*`, `?`, `[`, `{`, `,`) one glob pattern may hold, both sides
    /// together; more is refused with `invalid_pattern`. Default: 10.
    pub max_glob_wildcards: usize,
    /// Longest glob pattern in characters (exact patterns keep the protocol's 256);
    /// longer is refused with `invalid_pattern`. Default: 128.
    pub max_glob_length: usize,
    /// Conditions (fields) one subscription filter may hold; more is refused with
    /// `bad_request`. Default: 16.
    pub max_filter_conditions: usize,
    /// Values one `in` list of a filter may hold. Default: 100.
    pub max_filter_values: usize,
    /// Bytes of JSON one subscription filter may take (it is kept for the
    /// subscription's life). Default: 4096.
    pub max_filter_bytes: usize,
}

impl ConnectionConfig {
    /// The limits a subscription filter is checked against.
    pub fn filter_limits(&self) -> crate::filter::FilterLimits {
        crate::filter::FilterLimits {
            max_conditions: self.max_filter_conditions,
            max_values: self.max_filter_values,
            max_bytes: self.max_filter_bytes,
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            send_queue_capacity: 1024,
            send_queue_bytes: 1024 * 1024,
            max_subscriptions: 100,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(10),
            messages_per_second: 100,
            misuse_limit: 100,
            rate_limit_tolerance: 100,
            write_timeout: Duration::from_secs(10),
            max_connection_age: None,
            max_connections: 10_000,
            max_connections_per_user: 10_000,
            max_connections_per_ip: 10_000,
            read_buffer_size: 1024,
            write_buffer_size: 4096,
            max_glob_subscriptions: 20,
            max_glob_subscriptions_per_user: 100,
            max_globs_per_node: 1000,
            max_glob_wildcards: 10,
            max_glob_length: 128,
            max_filter_conditions: 16,
            max_filter_values: 100,
            max_filter_bytes: 4096,
        }
    }
}

/// Event log, ring and resume.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Recent events kept in memory for fast resumes. Default: 10000.
    pub ring_capacity: usize,
    /// Bytes the in-memory ring may hold at most (estimated: three times each event's
    /// encoded size, plus a small overhead); the oldest events are dropped first.
    /// Default: 32 MiB.
    pub ring_max_bytes: usize,
    /// A resume that would replay more matching events than this answers
    /// `recovered:false` (`too_many`). Default: 1000.
    pub replay_cap: usize,
    /// The most log rows one resume may read, matching or not: a resume whose range
    /// `(since, position]` holds more answers `recovered:false` (`too_many`) before
    /// reading anything, whatever its pattern matches. Default: 10000.
    pub resume_scan_budget: u64,
    /// Resumes (a `subscribe` with `since`, an SSE request with `Last-Event-ID`) are
    /// rate limited per user on this node: the allowance refills by one resume every
    /// `resume_interval`, up to `resume_burst`. Anonymous clients share one allowance.
    /// A resume past it is refused (`rate_limited`, HTTP 429). Default: 200 ms (5 per
    /// second).
    #[serde(with = "humantime_serde")]
    pub resume_interval: Duration,
    /// Resumes a user may make at once (a page reconnecting all its subscriptions).
    /// Default: 50.
    pub resume_burst: u32,
    /// Sequenced events kept in the table; older ones are pruned and a resume from
    /// before them answers `too_old`. Default: 100000.
    pub retention: u64,
    /// Bytes of sequenced events kept in the table (their payload, changes and rule
    /// fields); the oldest beyond it are pruned like those beyond `retention`.
    /// Default: 256 MiB.
    pub retention_bytes: u64,
    /// How often the relay and the gap filler poll the log even without a doorbell.
    /// While the broker is down or silent the gap filler polls every
    /// `broker.fallback_poll_interval` instead. Default: 500 ms.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Rows the relay sequences per transaction; on SQLite also the most committed
    /// events waiting to be handed to it in memory. Default: 500.
    pub relay_batch: u32,
    /// Postgres: the shortest time between two of the relay's batches that find rows,
    /// while commits keep waking it. A commit that comes sooner after the last such
    /// batch waits for the rest of it, and the commits meanwhile share one sequencing
    /// transaction, with its flush to disk, which would otherwise compete with the
    /// writers' at every commit. A commit after a quiet spell is relayed at once. `0s`
    /// relays every commit at once. At most 1 s. SQLite's relay never lingers: it only
    /// reads, and a linger would only add latency. Default: 2 ms.
    #[serde(with = "humantime_serde")]
    pub relay_linger: Duration,
    /// How long a resume may wait for this node to catch up with the log when its
    /// cursor is ahead of what the node has delivered (the client comes from another
    /// node whose events this one has not heard of yet). Past it, the resume answers
    /// `unknown_position`. Default: 2 s.
    #[serde(with = "humantime_serde")]
    pub catch_up_timeout: Duration,
    /// Postgres: the longest a node may hold up sequencing. A relay transaction that
    /// waits this long for the log's lock, runs a statement this long, or sits idle
    /// this long (its node hung, stopped or cut off while holding the lock) is ended by
    /// the database, so the other nodes resume sequencing within about this time,
    /// however the node failed. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub sequencer_timeout: Duration,
    /// The longest `wait` of an HTTP catch-up long poll (`GET /realtime/events`); a
    /// longer one is cut to it. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub catch_up_max_wait: Duration,
    /// Events one HTTP catch-up answer holds at most (its `limit` is cut to it; the
    /// client pages with the returned cursor). Default: 1000.
    pub catch_up_max_events: usize,
    /// HTTP catch-up long polls waiting at once on this node; past it a request
    /// answers at once instead of waiting. Default: 1000.
    pub catch_up_max_waiting: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            ring_capacity: 10_000,
            ring_max_bytes: 32 * 1024 * 1024,
            replay_cap: 1000,
            resume_scan_budget: 10_000,
            resume_interval: Duration::from_millis(200),
            resume_burst: 50,
            retention: 100_000,
            retention_bytes: 256 * 1024 * 1024,
            poll_interval: Duration::from_millis(500),
            relay_batch: 500,
            relay_linger: Duration::from_millis(2),
            catch_up_timeout: Duration::from_secs(2),
            sequencer_timeout: Duration::from_secs(5),
            catch_up_max_wait: Duration::from_secs(30),
            catch_up_max_events: 1000,
            catch_up_max_waiting: 1000,
        }
    }
}

/// How a node watches its broker. A broker only rings doorbells: while it is down or
/// silent the node polls the log faster, so a broker failure costs latency, never
/// events.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// How often every node publishes a heartbeat on the broker. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A subscription that receives nothing for this long, not even the node's own
    /// heartbeat, counts as silent and is replaced. Must exceed
    /// `heartbeat_interval`. Default: 3 s.
    #[serde(with = "humantime_serde")]
    pub silence_timeout: Duration,
    /// How often the node polls the log while the broker is down or silent (instead
    /// of `log.poll_interval`). Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub fallback_poll_interval: Duration,
    /// The first wait before subscribing again after a loss; each failed attempt
    /// doubles it. Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff: Duration,
    /// The longest wait between two attempts to subscribe. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    /// Prefix of the broker's channel (Redis), subject (NATS) or NOTIFY channel
    /// (Postgres), which is `<prefix>.events`: give each app sharing one broker its
    /// own. ASCII letters, digits, `-`, `_` and single inner dots. The library does
    /// not open brokers itself: pass it to
    /// [`BrokerOptions::with_channel_prefix`](crate::broker::BrokerOptions::with_channel_prefix)
    /// (the reference server does). Default: `tidings`.
    pub channel_prefix: String,
    /// The in-memory broker's budget for messages not yet read by every node's
    /// ingest; a logged event that does not fit goes by reference (the nodes read it
    /// from the log). Applies to the default broker of
    /// [`RealtimeBuilder::build`](crate::RealtimeBuilder::build); pass it to
    /// [`BrokerOptions::with_memory_buffer_bytes`](crate::broker::BrokerOptions::with_memory_buffer_bytes)
    /// otherwise (the reference server does). Default: 16 MiB.
    pub memory_buffer_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(3),
            fallback_poll_interval: Duration::from_millis(100),
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            channel_prefix: "tidings".to_owned(),
            memory_buffer_bytes: crate::broker::DEFAULT_MEMORY_BUFFER_BYTES,
        }
    }
}

/// Datastar SSE bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// Keep-alive comment interval (at most 15 s by the protocol). Default: 15 s.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Cookie holding the JWT for SSE requests, when set. Default: none.
    pub cookie_name: Option<String>,
    /// Events queued per stream before it is ended (the client resumes). Default: 1024.
    pub queue_capacity: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            cookie_name: None,
            queue_capacity: 1024,
        }
    }
}

/// Presence: who is subscribed to a topic (with `"presence": true`), across nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// A user's `leave` waits this long after their last connection to a topic went
    /// away, and a return within it (a page reload) sends neither `leave` nor `join`.
    /// Zero sends `leave` at once. Default: 3 s.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Every node publishes its full presence state this often, which repairs any
    /// change message the broker lost. Default: 2 s.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// A node not heard from for this long is presumed dead and its members are
    /// dropped (then `leave` follows after `grace`). Must exceed `sync_interval`.
    /// Default: 6 s.
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
    /// Users listed in one `presence` reply at most; beyond that the reply says
    /// `"truncated":true`. Default: 100.
    pub max_users_listed: usize,
    /// Largest presence broker message in bytes: a full state is split into parts of
    /// at most this size. Keep it under the smallest broker limit in use (Postgres
    /// NOTIFY: 8000 bytes). At least 1024. Default: 7000.
    pub max_message_bytes: usize,
    /// `join`/`leave` frames queued per connection before it is closed 4008.
    /// Default: 256.
    pub queue_capacity: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3),
            sync_interval: Duration::from_secs(2),
            node_ttl: Duration::from_secs(6),
            max_users_listed: 100,
            max_message_bytes: 7000,
            queue_capacity: 256,
        }
    }
}

/// Limits applied by [`Realtime::serve`](crate::Realtime::serve) to every socket
/// before its request becomes a WebSocket or SSE stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// A request's headers must arrive within this, counted from when the server
    /// starts waiting for them (a new socket, or an idle keep-alive one); else the
    /// socket is closed. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A socket that is not a WebSocket or SSE stream and moves no byte either way
    /// for this long is closed (a stalled request body, a stalled reader). Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger is answered
    /// 431. Default: 16384.
    pub max_header_bytes: usize,
    /// Open sockets per client IP address; more are answered 429 with `Retry-After`
    /// and closed. Default: 16384 (a node's connections plus room for plain requests,
    /// all through one reverse proxy); lower it when clients connect directly.
    pub max_sockets_per_ip: usize,
    /// New sockets per second per client IP address (bursts of twice that); more are
    /// answered 429 with `Retry-After` and closed. Default: 5000 (a proxy reconnecting
    /// a node's clients after a restart); lower it when clients connect directly.
    pub connects_per_second_per_ip: u32,
    /// Keys (IP addresses, users) a rate limiter remembers before it prunes the ones
    /// whose budget is full again without waiting for `prune_interval`. Default: 100000.
    pub max_tracked_keys: usize,
    /// How often the rate limiters forget keys whose budget is full again. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_sockets_per_ip: 16_384,
            connects_per_second_per_ip: 5_000,
            max_tracked_keys: 100_000,
            prune_interval: Duration::from_secs(30),
        }
    }
}

/// What clients may publish over the WebSocket (`publish` frames).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Largest `data` of one `publish`, as compact JSON; larger is refused with
    /// `limit_exceeded`. Default: 16384.
    pub max_payload_bytes: usize,
    /// Events one user may publish per `window`, across the user's connections on
    /// this node (anonymous publishers share one quota); more are refused with
    /// `rate_limited`. Default: 600.
    pub events_per_window: u32,
    /// Bytes of `data` one user may publish per `window`. Default: 4 MiB.
    pub bytes_per_window: u64,
    /// The quota's window; the quota refills evenly over it. Default: 60 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 16 * 1024,
            events_per_window: 600,
            bytes_per_window: 4 * 1024 * 1024,
            window: Duration::from_secs(60),
        }
    }
}

/// The app's handlers for client events (`RealtimeBuilder::on_publish`,
/// `on_request`, `middleware`; see `docs/handlers.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlersConfig {
    /// How long one call (the middleware chain and the handler) may take; past it
    /// the client gets `error` `internal` and the call is dropped. At most 5 min.
    /// Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Handled frames of one connection that may wait behind the one running (calls
    /// of a connection run one at a time, in order); more are refused with
    /// `rate_limited`. 1 to 1024. Default: 16.
    pub max_pending: usize,
}

impl Default for HandlersConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_pending: 16,
        }
    }
}

/// Longest `log.relay_linger` accepted: past it the linger would be a poll interval.
const MAX_RELAY_LINGER: Duration = Duration::from_secs(1);
/// Longest `handlers.timeout` accepted.
const MAX_HANDLER_TIMEOUT: Duration = Duration::from_secs(300);
/// Most `handlers.max_pending` accepted.
const MAX_HANDLER_PENDING: usize = 1024;

/// A setting outside its allowed range. Names the setting and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {setting} = {value}: {why}")]
pub struct ConfigError {
    /// Dotted name of the setting.
    pub setting: &'static str,
    /// The offending value.
    pub value: String,
    /// What is allowed.
    pub why: &'static str,
}

impl Config {
    /// Checks every range once. Key material is checked when the verifier is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |setting, value: String, why| {
            Err(ConfigError {
                setting,
                value,
                why,
            })
        };
        if self.jwt.leeway > Duration::from_secs(30) {
            return fail(
                "jwt.leeway",
                format!("{:?}", self.jwt.leeway),
                "at most 30s",
            );
        }
        let c = &self.connection;
        let t = &self.transport;
        let positive: &[(&str, usize)] = &[
            ("jwt.jwks_max_bytes", self.jwt.jwks_max_bytes),
            (
                "connection.max_connections_per_user",
                c.max_connections_per_user,
            ),
            (
                "connection.max_connections_per_ip",
                c.max_connections_per_ip,
            ),
            ("transport.max_sockets_per_ip", t.max_sockets_per_ip),
            ("transport.max_header_bytes", t.max_header_bytes),
            ("transport.max_tracked_keys", t.max_tracked_keys),
            ("publish.max_payload_bytes", self.publish.max_payload_bytes),
            ("connection.max_message_size", c.max_message_size),
            (
                "connection.max_glob_subscriptions",
                c.max_glob_subscriptions,
            ),
            (
                "connection.max_glob_subscriptions_per_user",
                c.max_glob_subscriptions_per_user,
            ),
            ("connection.max_globs_per_node", c.max_globs_per_node),
            ("connection.max_glob_wildcards", c.max_glob_wildcards),
            ("connection.max_glob_length", c.max_glob_length),
            ("connection.send_queue_capacity", c.send_queue_capacity),
            ("connection.send_queue_bytes", c.send_queue_bytes),
            ("connection.max_subscriptions", c.max_subscriptions),
            ("connection.max_connections", c.max_connections),
            ("log.ring_capacity", self.log.ring_capacity),
            ("log.catch_up_max_events", self.log.catch_up_max_events),
            ("sse.queue_capacity", self.sse.queue_capacity),
            ("presence.queue_capacity", self.presence.queue_capacity),
            ("handlers.max_pending", self.handlers.max_pending),
        ];
        for &(setting, value) in positive {
            if value == 0 {
                return fail(setting, "0".into(), "must be at least 1");
            }
        }
        let rates: [(&'static str, u32); 3] = [
            ("connection.messages_per_second", c.messages_per_second),
            (
                "transport.connects_per_second_per_ip",
                t.connects_per_second_per_ip,
            ),
            ("publish.events_per_window", self.publish.events_per_window),
        ];
        for (setting, value) in rates {
            if value == 0 {
                return fail(setting, "0".into(), "must be at least 1");
            }
        }
        if c.read_buffer_size < 256 || c.write_buffer_size < 256 {
            return fail(
                "connection.read_buffer_size/write_buffer_size",
                format!("{}/{}", c.read_buffer_size, c.write_buffer_size),
                "at least 256 bytes",
            );
        }
        let b = &self.broker;
        let j = &self.jwt;
        let durations: &[(&str, Duration)] = &[
            ("jwt.jwks_refresh_interval", j.jwks_refresh_interval),
            ("jwt.jwks_min_refetch_interval", j.jwks_min_refetch_interval),
            ("jwt.jwks_fetch_timeout", j.jwks_fetch_timeout),
            ("transport.header_read_timeout", t.header_read_timeout),
            ("transport.idle_timeout", t.idle_timeout),
            ("transport.prune_interval", t.prune_interval),
            ("publish.window", self.publish.window),
            ("log.resume_interval", self.log.resume_interval),
            ("auth.auth_timeout", self.auth.auth_timeout),
            ("connection.write_timeout", c.write_timeout),
            (
                "connection.max_connection_age",
                c.max_connection_age.unwrap_or(Duration::MAX),
            ),
            ("connection.ping_interval", c.ping_interval),
            ("connection.ping_timeout", c.ping_timeout),
            ("log.poll_interval", self.log.poll_interval),
            ("log.sequencer_timeout", self.log.sequencer_timeout),
            ("sse.keep_alive", self.sse.keep_alive),
            ("broker.heartbeat_interval", b.heartbeat_interval),
            ("broker.silence_timeout", b.silence_timeout),
            ("broker.fallback_poll_interval", b.fallback_poll_interval),
            ("broker.reconnect_backoff", b.reconnect_backoff),
            ("broker.reconnect_backoff_max", b.reconnect_backoff_max),
            ("presence.sync_interval", self.presence.sync_interval),
            ("handlers.timeout", self.handlers.timeout),
        ];
        for &(setting, value) in durations {
            if value.is_zero() {
                return fail(setting, "0s".into(), "must be positive");
            }
        }
        if self.log.relay_linger > MAX_RELAY_LINGER {
            return fail(
                "log.relay_linger",
                format!("{:?}", self.log.relay_linger),
                "at most 1 s",
            );
        }
        if self.handlers.timeout > MAX_HANDLER_TIMEOUT {
            return fail(
                "handlers.timeout",
                format!("{:?}", self.handlers.timeout),
                "at most 5 min",
            );
        }
        if self.handlers.max_pending > MAX_HANDLER_PENDING {
            return fail(
                "handlers.max_pending",
                self.handlers.max_pending.to_string(),
                "at most 1024",
            );
        }
        if self.sse.keep_alive > Duration::from_secs(15) {
            return fail(
                "sse.keep_alive",
                format!("{:?}", self.sse.keep_alive),
                "at most 15s",
            );
        }
        let minimums: [(&'static str, u64, u64, &'static str); 4] = [
            (
                "log.ring_max_bytes",
                self.log.ring_max_bytes as u64,
                64 * 1024,
                "at least 64 KiB",
            ),
            ("log.retention", self.log.retention, 1, "must be at least 1"),
            (
                "log.retention_bytes",
                self.log.retention_bytes,
                1024 * 1024,
                "at least 1 MiB",
            ),
            (
                "broker.memory_buffer_bytes",
                self.broker.memory_buffer_bytes as u64,
                64 * 1024,
                "at least 64 KiB",
            ),
        ];
        for (setting, value, minimum, why) in minimums {
            if value < minimum {
                return fail(setting, value.to_string(), why);
            }
        }
        self.validate_publish()?;
        let l = &self.log;
        let at_least_one: [(&'static str, u64); 3] = [
            ("log.relay_batch", u64::from(l.relay_batch)),
            ("log.resume_scan_budget", l.resume_scan_budget),
            ("log.resume_burst", u64::from(l.resume_burst)),
        ];
        for (setting, value) in at_least_one {
            if value == 0 {
                return fail(setting, "0".into(), "must be at least 1");
            }
        }
        let p = &self.presence;
        if p.node_ttl <= p.sync_interval {
            return fail(
                "presence.node_ttl",
                format!("{:?}", p.node_ttl),
                "must exceed presence.sync_interval (3x is a good choice)",
            );
        }
        if p.max_message_bytes < 1024 {
            return fail(
                "presence.max_message_bytes",
                p.max_message_bytes.to_string(),
                "at least 1024 bytes",
            );
        }
        self.validate_broker()
    }

    fn validate_publish(&self) -> Result<(), ConfigError> {
        let p = &self.publish;
        // One payload must fit the byte quota, or no publish could ever pass. (The
        // frame limit needs no check: a payload is never larger than its frame.)
        if p.max_payload_bytes as u64 > p.bytes_per_window {
            return Err(ConfigError {
                setting: "publish.max_payload_bytes",
                value: p.max_payload_bytes.to_string(),
                why: "at most publish.bytes_per_window",
            });
        }
        if p.bytes_per_window > u64::from(u32::MAX) {
            return Err(ConfigError {
                setting: "publish.bytes_per_window",
                value: p.bytes_per_window.to_string(),
                why: "at most 4294967295",
            });
        }
        Ok(())
    }

    fn validate_broker(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        // Otherwise a working broker would be taken for silent between heartbeats.
        if b.silence_timeout <= b.heartbeat_interval {
            return Err(ConfigError {
                setting: "broker.silence_timeout",
                value: format!("{:?}", b.silence_timeout),
                why: "must exceed broker.heartbeat_interval (3x is a good choice)",
            });
        }
        if b.reconnect_backoff > b.reconnect_backoff_max {
            return Err(ConfigError {
                setting: "broker.reconnect_backoff",
                value: format!("{:?}", b.reconnect_backoff),
                why: "at most broker.reconnect_backoff_max",
            });
        }
        let options =
            crate::broker::BrokerOptions::default().with_channel_prefix(b.channel_prefix.clone());
        if options.channel().is_err() {
            return Err(ConfigError {
                setting: "broker.channel_prefix",
                value: format!("{:?}", b.channel_prefix),
                why: "ASCII letters, digits, '-', '_' and single inner dots",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut config = Config::default();
        config.jwt.leeway = Duration::from_secs(60);
        assert_eq!(config.validate().unwrap_err().setting, "jwt.leeway");
        let mut config = Config::default();
        config.connection.send_queue_capacity = 0;
        assert_eq!(
            config.validate().unwrap_err().setting,
            "connection.send_queue_capacity"
        );
    }

    #[test]
    fn hardening_limits_are_checked() {
        type Edit = fn(&mut Config);
        let cases: [(Edit, &str); 10] = [
            (|c| c.handlers.timeout = Duration::ZERO, "handlers.timeout"),
            (
                |c| c.handlers.timeout = Duration::from_secs(301),
                "handlers.timeout",
            ),
            (|c| c.handlers.max_pending = 1025, "handlers.max_pending"),
            (
                |c| c.transport.header_read_timeout = Duration::ZERO,
                "transport.header_read_timeout",
            ),
            (
                |c| c.transport.connects_per_second_per_ip = 0,
                "transport.connects_per_second_per_ip",
            ),
            (
                |c| c.connection.max_connections_per_user = 0,
                "connection.max_connections_per_user",
            ),
            (
                |c| c.publish.max_payload_bytes = 5_000_000,
                "publish.max_payload_bytes",
            ),
            (|c| c.log.retention_bytes = 1000, "log.retention_bytes"),
            (|c| c.log.ring_max_bytes = 1000, "log.ring_max_bytes"),
            (
                |c| c.jwt.jwks_min_refetch_interval = Duration::ZERO,
                "jwt.jwks_min_refetch_interval",
            ),
        ];
        for (edit, setting) in cases {
            let mut config = Config::default();
            edit(&mut config);
            assert_eq!(config.validate().unwrap_err().setting, setting);
        }
        let parsed: Config = toml::from_str(
            "[transport]\nidle_timeout = \"5s\"\n[publish]\nwindow = \"10s\"\n\
             [handlers]\ntimeout = \"2s\"\nmax_pending = 4\n\
             [[jwt.jwks]]\nissuer = \"https://idp\"\nfile = \"/k.json\"\nalgorithms = [\"EdDSA\"]",
        )
        .unwrap();
        assert_eq!(parsed.transport.idle_timeout, Duration::from_secs(5));
        assert_eq!(parsed.handlers.timeout, Duration::from_secs(2));
        assert_eq!(parsed.handlers.max_pending, 4);
        assert_eq!(parsed.jwt.jwks[0].algorithms, [JwtAlgorithm::EdDSA]);
        parsed.validate().unwrap();
    }

    #[test]
    fn broker_settings_are_checked() {
        let mut config = Config::default();
        config.broker.silence_timeout = config.broker.heartbeat_interval;
        assert_eq!(
            config.validate().unwrap_err().setting,
            "broker.silence_timeout"
        );
        let mut config = Config::default();
        config.broker.fallback_poll_interval = Duration::ZERO;
        assert_eq!(
            config.validate().unwrap_err().setting,
            "broker.fallback_poll_interval"
        );
        let mut config = Config::default();
        config.broker.reconnect_backoff = Duration::from_secs(10);
        assert_eq!(
            config.validate().unwrap_err().setting,
            "broker.reconnect_backoff"
        );
        for prefix in ["", "has space", "a..b", "x.*"] {
            let mut config = Config::default();
            config.broker.channel_prefix = prefix.into();
            assert_eq!(
                config.validate().unwrap_err().setting,
                "broker.channel_prefix",
                "{prefix:?}"
            );
        }
        let parsed: Config =
            toml::from_str("[broker]\nsilence_timeout = \"10s\"\nchannel_prefix = \"app-1\"")
                .unwrap();
        assert_eq!(parsed.broker.silence_timeout, Duration::from_secs(10));
        assert_eq!(parsed.broker.channel_prefix, "app-1");
        parsed.validate().unwrap();
    }

    #[test]
    fn relay_linger_parses_and_is_bounded() {
        let parsed: Config = toml::from_str("[log]\nrelay_linger = \"0s\"").unwrap();
        assert_eq!(parsed.log.relay_linger, Duration::ZERO);
        parsed.validate().unwrap();
        let mut config = Config::default();
        config.log.relay_linger = Duration::from_millis(1001);
        assert_eq!(config.validate().unwrap_err().setting, "log.relay_linger");
    }

    #[test]
    fn presence_node_ttl_must_outlast_a_sync() {
        let mut config = Config::default();
        config.presence.node_ttl = config.presence.sync_interval;
        assert_eq!(config.validate().unwrap_err().setting, "presence.node_ttl");
        let parsed: Config = toml::from_str("[presence]\ngrace = \"1s\"").unwrap();
        assert_eq!(parsed.presence.grace, Duration::from_secs(1));
    }

    #[test]
    fn write_timeout_and_connection_age_parse_and_are_checked() {
        let parsed: Config =
            toml::from_str("[connection]\nwrite_timeout = \"3s\"\nmax_connection_age = \"1h\"")
                .unwrap();
        assert_eq!(parsed.connection.write_timeout, Duration::from_secs(3));
        assert_eq!(
            parsed.connection.max_connection_age,
            Some(Duration::from_secs(3600))
        );
        parsed.validate().unwrap();
        assert_eq!(Config::default().connection.max_connection_age, None);
        let mut config = Config::default();
        config.connection.max_connection_age = Some(Duration::ZERO);
        assert_eq!(
            config.validate().unwrap_err().setting,
            "connection.max_connection_age"
        );
        let mut config = Config::default();
        config.connection.write_timeout = Duration::ZERO;
        assert_eq!(
            config.validate().unwrap_err().setting,
            "connection.write_timeout"
        );
    }

    #[test]
    fn matching_and_resume_limits_must_be_positive() {
        type BreakIt = fn(&mut Config);
        let cases: [(&str, BreakIt); 5] = [
            ("connection.max_globs_per_node", |c| {
                c.connection.max_globs_per_node = 0;
            }),
            ("connection.max_glob_wildcards", |c| {
                c.connection.max_glob_wildcards = 0;
            }),
            ("log.resume_scan_budget", |c| c.log.resume_scan_budget = 0),
            ("log.resume_burst", |c| c.log.resume_burst = 0),
            ("log.resume_interval", |c| {
                c.log.resume_interval = Duration::ZERO
            }),
        ];
        for (setting, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            assert_eq!(config.validate().unwrap_err().setting, setting);
        }
        let parsed: Config = toml::from_str(
            "[connection]\nmax_glob_subscriptions = 5\n[log]\nresume_interval = \"1s\"",
        )
        .unwrap();
        assert_eq!(parsed.connection.max_glob_subscriptions, 5);
        assert_eq!(parsed.log.resume_interval, Duration::from_secs(1));
    }

    #[test]
    fn toml_with_unknown_field_is_refused() {
        let parsed: Result<Config, _> = toml::from_str("nonsense = 1");
        assert!(parsed.is_err());
        let parsed: Config = toml::from_str("[auth]\nauth_timeout = \"3s\"").unwrap();
        assert_eq!(parsed.auth.auth_timeout, Duration::from_secs(3));
    }
}
