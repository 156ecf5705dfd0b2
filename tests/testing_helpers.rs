//! `tidings::testing` as an app's own tests use it: a gateway on in-memory SQLite, the
//! events its writes emitted, and who would receive them.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tidings::{
    Action, Model, Principal, Rule, Rules,
    testing::{TestGateway, TestingError},
};

#[derive(Debug, Clone, Serialize, Deserialize, Model)]
#[tidings(collection = "notes")]
struct Note {
    id: String,
    body: String,
    #[tidings(rule)]
    owner_id: String,
    #[tidings(hidden)]
    internal: Option<String>,
}

fn note(id: &str, owner: &str) -> Note {
    Note {
        id: id.into(),
        body: format!("{id} body"),
        owner_id: owner.into(),
        internal: Some("secret".into()),
    }
}

async fn gateway() -> TestGateway {
    let gateway = TestGateway::start(|builder| {
        builder.rules(
            Rules::new()
                .collection("notes", Rule::Owner("owner_id".into()), Rule::Deny)
                .collection("news", Rule::Public, Rule::Deny),
        )
    })
    .await
    .expect("start");
    gateway
        .execute(
            "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL, \
             owner_id TEXT NOT NULL, internal TEXT)",
        )
        .await
        .expect("create table");
    gateway
}

#[tokio::test]
async fn committed_writes_are_the_events_and_rollbacks_are_not() {
    let gateway = gateway().await;
    let store = gateway.store();
    let mut tx = store.begin().await.unwrap();
    tx.insert(&note("n1", "ann")).await.unwrap();
    tx.insert(&note("n2", "bob")).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert(&note("n3", "ann")).await.unwrap();
    tx.rollback().await.unwrap();

    let events = gateway.take_events().await.unwrap();
    let topics: Vec<(Action, String)> = events.iter().map(|e| (e.action, e.topic())).collect();
    assert_eq!(
        topics,
        [
            (Action::Create, "notes:n1".to_owned()),
            (Action::Create, "notes:n2".to_owned())
        ]
    );
    assert_eq!(
        events[0].payload,
        json!({"id": "n1", "body": "n1 body", "owner_id": "ann"})
    );
    // Taken: the next call sees only what came after.
    let mut tx = store.begin().await.unwrap();
    tx.delete::<Note>("n1").await.unwrap();
    tx.commit().await.unwrap();
    let next = gateway.take_events().await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].action, Action::Delete);
    assert_eq!(gateway.events().await.unwrap().len(), 3);
}

#[tokio::test]
async fn subscribers_receive_what_the_rules_let_them() {
    let gateway = gateway().await;
    let mut tx = gateway.store().begin().await.unwrap();
    tx.insert(&note("n1", "ann")).await.unwrap();
    tx.insert(&note("n2", "bob")).await.unwrap();
    tx.commit().await.unwrap();
    gateway
        .realtime()
        .store()
        .record(&tidings::LogEntry::broadcast(
            "news",
            None,
            "flash",
            json!({"x": 1}),
        ))
        .await
        .unwrap();

    let ann = gateway
        .subscriber(Principal::user("ann", &[]), "notes:*")
        .unwrap()
        .and("news")
        .unwrap();
    let keys: Vec<String> = ann
        .received()
        .await
        .unwrap()
        .iter()
        .map(|e| e.topic())
        .collect();
    assert_eq!(keys, ["notes:n1", "news"]);
    let only_n2 = gateway
        .subscriber(Principal::user("bob", &[]), "notes:n2")
        .unwrap();
    assert_eq!(only_n2.received().await.unwrap().len(), 1);
    // A subscription the gateway would refuse is refused here too.
    let refused = gateway.subscriber(Principal::anonymous(), "notes:*");
    assert!(
        matches!(refused, Err(TestingError::Refused { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        gateway.subscriber(Principal::anonymous(), "no spaces"),
        Err(TestingError::Pattern(_))
    ));
}

#[tokio::test]
async fn plain_sql_on_a_captured_table_is_an_event_too() {
    let gateway = gateway().await;
    gateway.store().install_capture::<Note>().await.unwrap();
    gateway
        .execute("INSERT INTO notes VALUES ('n9', 'raw', 'ann', 'secret')")
        .await
        .unwrap();
    let events = gateway.take_events().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].payload,
        json!({"id": "n9", "body": "raw", "owner_id": "ann"})
    );
}
