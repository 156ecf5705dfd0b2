//! Two nodes on one database: events written on one reach subscribers on the other,
//! through a shared broker, and also when the broker loses every doorbell (each node
//! then finds the events in the log by polling).

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    backend_tests,
    db::{Backend, fresh_database_url},
    server::{Client, serve_gateway, test_config, token},
};
use serde_json::json;
use tidings::{Broadcast, Db, Realtime, Target, broker::MemoryBroker, demo};

async fn node(url: &str, broker: Arc<MemoryBroker>) -> (Realtime, String) {
    let mut config = test_config();
    config.log.poll_interval = Duration::from_millis(100);
    let db = Db::connect(url).await.unwrap();
    demo::migrate(&db).await.unwrap();
    let realtime = Realtime::builder(config, db)
        .rules(demo::rules())
        .broker(broker)
        .build()
        .await
        .unwrap();
    let url = serve_gateway(&realtime).await;
    (realtime, url)
}

async fn client(url: &str) -> Client {
    let mut client = Client::authenticated(url, &token("ann")).await;
    client.subscribe("s", "todos").await;
    client
}

backend_tests!(
    async fn events_cross_nodes_with_a_shared_broker_and_without_one(backend: Backend) {
        let url = fresh_database_url(backend).await;
        // SQLite in one process: both nodes share the file, as two processes would.
        let shared = Arc::new(MemoryBroker::new(1024));
        let (a, a_addr) = node(&url, shared.clone()).await;
        let (_b, b_addr) = node(&url, shared).await;
        // A third node whose broker hears nothing from the others.
        let (_c, c_addr) = node(&url, Arc::new(MemoryBroker::new(1024))).await;
        let mut on_a = client(&a_addr).await;
        let mut on_b = client(&b_addr).await;
        let mut on_c = client(&c_addr).await;
        for n in 0..5 {
            a.broadcast(Broadcast::new(
                Target::Collection("todos".into()),
                "n",
                json!(n),
            ))
            .await
            .unwrap();
        }
        for client in [&mut on_a, &mut on_b, &mut on_c] {
            let mut cursors = Vec::new();
            for n in 0..5 {
                let event = client.recv_event().await;
                assert_eq!(event["data"], n);
                cursors.push(event["cursor"].as_str().unwrap().to_owned());
            }
            cursors.dedup();
            assert_eq!(cursors.len(), 5, "no duplicates");
        }
    }
);
