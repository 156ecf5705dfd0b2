//! A real tidings server on 127.0.0.1:0 (the library plus the demo app), and a real
//! WebSocket client for it.

use std::{net::SocketAddr, time::Duration};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidings::{Config, Db, Realtime, RealtimeBuilder, demo};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use super::db::{Backend, fresh_database_url};

/// The HS256 secret every test server uses.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
/// How long a test waits for any expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The gateway handle (for Rust-side broadcasts and the store).
    pub realtime: Realtime,
    /// The database URL (to open a second node on the same log).
    pub database_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.realtime.shutdown_token().cancel();
        self.server.abort();
    }
}

/// A change to the builder, applied after `demo::configure`.
pub type BuilderHook = Box<dyn FnOnce(RealtimeBuilder) -> RealtimeBuilder + Send>;
/// Routes to merge into the app, given the built gateway.
pub type RoutesHook = Box<dyn FnOnce(&Realtime) -> axum::Router + Send>;

/// What a test adds to the standard server (all optional).
#[derive(Default)]
pub struct Extras {
    /// Applied to the builder after `demo::configure`.
    pub builder: Option<BuilderHook>,
    /// Merged into the app's router.
    pub routes: Option<RoutesHook>,
    /// The demo's options (default: no minting, no Datastar URL).
    pub demo: demo::DemoOptions,
}

/// Signs `claims` with the test secret.
pub fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// The seq of a cursor string `"<epoch>:<seq>"`.
pub fn seq_of_cursor(cursor: &str) -> u64 {
    cursor
        .rsplit_once(':')
        .expect("cursor")
        .1
        .parse()
        .expect("seq")
}

/// The seq of a frame's `cursor` field.
pub fn seq_of(frame: &Value) -> u64 {
    seq_of_cursor(frame["cursor"].as_str().expect("a cursor"))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    tidings::__private::unix_now()
}

/// A valid token for `sub`, one hour long.
pub fn token(sub: &str) -> String {
    sign(json!({"sub": sub, "exp": now() + 3600}))
}

/// A valid token for `sub` with `roles`.
pub fn token_with_roles(sub: &str, roles: &[&str]) -> String {
    sign(json!({"sub": sub, "exp": now() + 3600, "roles": roles}))
}

/// Serves `realtime`'s own routes on a free port of 127.0.0.1 (a node without the demo
/// app) and returns its WebSocket URL.
pub async fn serve_gateway(realtime: &Realtime) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = realtime.router();
    let serving = realtime.clone();
    tokio::spawn(async move { serving.serve(listener, app).await });
    format!("ws://{addr}/realtime/subscribe")
}

/// The default test configuration: the test secret, and per-address and per-user
/// limits lifted, since every test client comes from 127.0.0.1 and many act as the
/// same user (tests of those limits set them); everything else default.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.jwt.secret = Some(SECRET.into());
    config.transport.max_sockets_per_ip = 1_000_000;
    config.transport.connects_per_second_per_ip = 1_000_000;
    config.connection.max_connections_per_ip = 1_000_000;
    config.connection.max_connections_per_user = 1_000_000;
    config.publish.events_per_window = 1_000_000;
    config.publish.bytes_per_window = u64::from(u32::MAX);
    config
}

impl TestServer {
    /// Starts a server on a fresh database of `backend` with `configure` applied.
    pub async fn start(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let url = fresh_database_url(backend).await;
        Self::start_on(&url, configure).await
    }

    /// Starts a server on an existing database (another node, or a restart).
    pub async fn start_on(database_url: &str, configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_with(database_url, configure, Extras::default()).await
    }

    /// Like `start`, with builder hooks, extra routes or demo options.
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut Config),
        extras: Extras,
    ) -> Self {
        let url = fresh_database_url(backend).await;
        Self::start_on_with(&url, configure, extras).await
    }

    /// Like `start_on`, with builder hooks, extra routes or demo options.
    pub async fn start_on_with(
        database_url: &str,
        configure: impl FnOnce(&mut Config),
        extras: Extras,
    ) -> Self {
        let mut config = test_config();
        configure(&mut config);
        let db = Db::connect(database_url).await.expect("connect");
        demo::migrate(&db).await.expect("demo migrations");
        let mut builder = demo::configure(Realtime::builder(config, db));
        if let Some(customize) = extras.builder {
            builder = customize(builder);
        }
        let realtime = builder.build().await.expect("build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        realtime.set_local_addr(addr);
        let mut app = demo::router(&realtime, extras.demo).merge(realtime.router());
        if let Some(routes) = extras.routes {
            app = app.merge(routes(&realtime));
        }
        let serving = realtime.clone();
        let server = tokio::spawn(async move {
            let _ = serving.serve(listener, app).await;
        });
        Self {
            addr,
            realtime,
            database_url: database_url.to_owned(),
            server,
        }
    }

    /// `ws://addr/realtime/subscribe`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/realtime/subscribe", self.addr)
    }

    /// Broadcasts `event` with `data` to every subscriber of `collection` (a logged
    /// event), as the app's own code would.
    pub async fn broadcast_to(&self, collection: &str, event: &str, data: Value) {
        self.realtime
            .broadcast(tidings::Broadcast::new(
                tidings::Target::Collection(collection.into()),
                event,
                data,
            ))
            .await
            .expect("broadcast");
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Opens a WebSocket without authenticating.
    pub async fn open(&self) -> Client {
        self.open_with(|_| {}).await.expect("upgrade")
    }

    /// Opens a WebSocket, letting the caller add headers; the HTTP error on refusal.
    pub async fn open_with(
        &self,
        edit: impl FnOnce(&mut tokio_tungstenite::tungstenite::handshake::client::Request),
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = self.ws_url().into_client_request().expect("request");
        edit(&mut request);
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgrade timed out")?;
        Ok(Client {
            ws,
            connection_id: String::new(),
        })
    }

    /// Opens, authenticates as `sub` and reads `welcome`.
    pub async fn connect(&self, sub: &str) -> Client {
        let mut client = self.open().await;
        client
            .send(json!({"type": "auth", "token": token(sub)}))
            .await;
        let welcome = client.recv_type("welcome").await;
        client.connection_id = welcome["connection_id"].as_str().expect("id").to_owned();
        client
    }

    /// An HTTP client.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// `POST /api/{collection}` as `sub`; returns the created record.
    pub async fn create(&self, sub: &str, collection: &str, body: Value) -> Value {
        let response = self
            .http()
            .post(self.url(&format!("/api/{collection}")))
            .bearer_auth(token(sub))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 201, "create {collection}");
        response.json().await.expect("json")
    }

    /// `PATCH /api/{collection}/{id}` as `sub`; the response, for its status and body.
    pub async fn patch(
        &self,
        sub: &str,
        collection: &str,
        id: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http()
            .patch(self.url(&format!("/api/{collection}/{id}")))
            .bearer_auth(token(sub))
            .json(&body)
            .send()
            .await
            .expect("PATCH")
    }

    /// `DELETE /api/{collection}/{id}` as `sub`; the response status.
    pub async fn delete(&self, sub: &str, collection: &str, id: &str) -> reqwest::StatusCode {
        self.http()
            .delete(self.url(&format!("/api/{collection}/{id}")))
            .bearer_auth(token(sub))
            .send()
            .await
            .expect("DELETE")
            .status()
    }
}

/// A real WebSocket client.
pub struct Client {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// From `welcome`.
    pub connection_id: String,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Code(u16),
    /// The socket ended without a close frame.
    NoCloseFrame,
}

impl Client {
    /// Opens a WebSocket to `url` (`ws://...`), authenticates with `token` and reads
    /// `welcome`.
    pub async fn authenticated(url: &str, token: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("upgrade timed out")
            .expect("upgrade");
        let mut client = Self {
            ws,
            connection_id: String::new(),
        };
        client.send(json!({"type": "auth", "token": token})).await;
        let welcome = client.recv_type("welcome").await;
        client.connection_id = welcome["connection_id"].as_str().expect("id").to_owned();
        client
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text frame as JSON; panics after `WAIT` or on close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("socket error");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(frame) => panic!("closed while waiting for a frame: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips frames until one of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
            assert_ne!(
                frame["type"], "error",
                "unexpected error frame waiting for {kind}: {frame}"
            );
        }
    }

    /// The next frame, which must be an event.
    pub async fn recv_event(&mut self) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], "event", "expected an event, got {frame}");
        frame
    }

    /// Subscribes and returns the `subscribed` frame.
    pub async fn subscribe(&mut self, id: &str, pattern: &str) -> Value {
        self.send(json!({"type": "subscribe", "id": id, "pattern": pattern}))
            .await;
        let frame = self.recv().await;
        assert_eq!(frame["type"], "subscribed", "subscribe {pattern}: {frame}");
        frame
    }

    /// Waits for the connection to end; returns the close code.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(Some(frame)))) => return Ended::Code(frame.code.into()),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Ended::NoCloseFrame,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sets the Origin header on an upgrade request.
    pub fn origin(
        request: &mut tokio_tungstenite::tungstenite::handshake::client::Request,
        origin: &str,
    ) {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("header"));
    }
}
