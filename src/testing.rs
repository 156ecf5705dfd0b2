//! Helpers for an application's own tests (cargo feature `testing`): a gateway on an
//! in-memory SQLite database, the events its writes emitted, and who would receive
//! them, without sockets.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidings::{Action, Model, Principal, Rule, Rules, testing::TestGateway};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Model)]
//! #[tidings(collection = "notes")]
//! struct Note { id: String, body: String, #[tidings(rule)] owner_id: String }
//!
//! let gateway = TestGateway::start(|builder| {
//!     builder.rules(Rules::new().collection("notes", Rule::Owner("owner_id".into()), Rule::Deny))
//! })
//! .await?;
//! gateway.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT, owner_id TEXT)").await?;
//!
//! // The code under test writes through the store, as in production.
//! let mut tx = gateway.store().begin().await?;
//! tx.insert(&Note { id: "n1".into(), body: "hi".into(), owner_id: "ann".into() }).await?;
//! tx.commit().await?;
//!
//! let events = gateway.take_events().await?;
//! assert_eq!(events.len(), 1);
//! assert_eq!((events[0].action, events[0].topic()), (Action::Create, "notes:n1".to_owned()));
//! let ann = gateway.subscriber(Principal::user("ann", &[]), "notes:*")?;
//! let bob = gateway.subscriber(Principal::user("bob", &[]), "notes:*")?;
//! assert!(ann.receives(&events[0]) && !bob.receives(&events[0]));
//! # Ok(()) }
//! ```

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use crate::{
    LogEntry, Principal, Realtime, RealtimeBuilder, access::Interest, app::BuildError,
    config::Config, db::Db, log::reader, model::Store, topic::Pattern,
};

/// Why a test helper failed.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// The in-memory database could not be opened.
    #[error(transparent)]
    Db(#[from] crate::DbError),
    /// The gateway could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// The pattern is not a valid pattern.
    #[error(transparent)]
    Pattern(#[from] crate::TopicError),
    /// The rules refuse this subscription (as a client would be refused).
    #[error("the rules refuse {pattern:?} to this principal")]
    Refused {
        /// The pattern asked for.
        pattern: String,
    },
}

/// A gateway on a private in-memory SQLite database, with the in-memory broker. Build
/// it with your rules; write through [`TestGateway::store`] (or plain SQL on a captured
/// table); read what was emitted with [`TestGateway::events`].
#[derive(Debug)]
pub struct TestGateway {
    realtime: Realtime,
    /// The seq up to which [`TestGateway::take_events`] has returned events.
    taken: AtomicI64,
}

impl TestGateway {
    /// Starts a gateway; `configure` adds rules, renderers and the like to the builder.
    pub async fn start(
        configure: impl FnOnce(RealtimeBuilder) -> RealtimeBuilder,
    ) -> Result<Self, TestingError> {
        let db = Db::connect("sqlite::memory:").await?;
        let mut config = Config::default();
        // Nobody signs tokens in these tests; the gateway still wants a valid key.
        config.jwt.secret = Some(format!("tidings-testing-{}", uuid::Uuid::new_v4().simple()));
        let realtime = configure(Realtime::builder(config, db)).build().await?;
        Ok(Self {
            realtime,
            taken: AtomicI64::new(0),
        })
    }

    /// The gateway, for everything else (broadcasts, presence, its router).
    pub fn realtime(&self) -> &Realtime {
        &self.realtime
    }

    /// The store the code under test writes through.
    pub fn store(&self) -> Store {
        self.realtime.store()
    }

    /// Runs `sql` (several statements are fine): create the app's tables, seed rows,
    /// or write with plain SQL.
    pub async fn execute(&self, sql: &str) -> Result<(), TestingError> {
        if let Db::Sqlite(pool) = self.realtime.db() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Every event committed so far, in commit order, whether or not the relay has
    /// published it yet: a rolled-back write is never here.
    pub async fn events(&self) -> Result<Vec<LogEntry>, TestingError> {
        Ok(self
            .read_after(0)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The events committed since the last call (or since the start).
    pub async fn take_events(&self) -> Result<Vec<LogEntry>, TestingError> {
        let rows = self.read_after(self.taken.load(Ordering::Acquire)).await?;
        if let Some((last, _)) = rows.last() {
            self.taken.fetch_max(*last, Ordering::AcqRel);
        }
        Ok(rows.into_iter().map(|(_, e)| e).collect())
    }

    /// `principal` subscribed to `pattern`, or [`TestingError::Refused`] when the
    /// gateway would refuse that subscription.
    pub fn subscriber(
        &self,
        principal: Principal,
        pattern: &str,
    ) -> Result<Subscriber<'_>, TestingError> {
        let parsed = Pattern::parse(pattern)?;
        if self.realtime.rules().admit(&principal, &parsed).is_denied() {
            return Err(TestingError::Refused {
                pattern: pattern.to_owned(),
            });
        }
        Ok(Subscriber {
            gateway: self,
            principal,
            patterns: vec![Arc::new(parsed)],
        })
    }

    /// Outbox rows with a seq above `after`, in seq order (commit order: SQLite numbers
    /// each row as it is inserted), read with the log's own decoder.
    async fn read_after(&self, after: i64) -> Result<Vec<(i64, LogEntry)>, TestingError> {
        let Db::Sqlite(pool) = self.realtime.db() else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {} FROM realtime_outbox WHERE seq > ? ORDER BY seq",
            reader::EVENT_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                reader::decode_row(row).map(|(id, event)| (i64::try_from(id).unwrap_or(0), event))
            })
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }
}

/// A principal subscribed to patterns: which events it would receive, decided by the
/// same function as every transport's replay.
#[derive(Debug)]
pub struct Subscriber<'g> {
    gateway: &'g TestGateway,
    principal: Principal,
    patterns: Vec<Arc<Pattern>>,
}

impl Subscriber<'_> {
    /// Adds another pattern (checked like the first).
    pub fn and(mut self, pattern: &str) -> Result<Self, TestingError> {
        let more = self.gateway.subscriber(self.principal.clone(), pattern)?;
        self.patterns.extend(more.patterns);
        Ok(self)
    }

    /// Whether `event` would be delivered to this subscriber (as logged, or as the
    /// `enter` or `leave` of an update that moves the record into or out of view).
    pub fn receives(&self, event: &LogEntry) -> bool {
        Interest::new(
            self.gateway.realtime.rules(),
            &self.principal,
            &self.patterns,
            None,
        )
        .receives(event)
    }

    /// The events committed so far that this subscriber would receive, in order.
    pub async fn received(&self) -> Result<Vec<LogEntry>, TestingError> {
        let events = self.gateway.events().await?;
        Ok(events.into_iter().filter(|e| self.receives(e)).collect())
    }
}
