//! The Datastar SSE endpoint over real HTTP, on SQLite and Postgres: record events
//! mapped (demo renderer for todos, default signals for notes), read rules, refusals,
//! keep-alives, shutdown, disconnect callbacks and overflow.

mod common;

use std::time::Duration;

use common::{
    backend_tests,
    db::Backend,
    server::{Extras, TestServer, WAIT, now, sign, token},
    sse::{End, Item, SseStream, seq_of},
};
use serde_json::json;
use tidings::{Rule, demo};
use tokio::sync::mpsc;

backend_tests!(
    async fn crud_events_arrive_rendered_in_order(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.sse("ann", "todos:*").await;
        assert_eq!(ann.headers["content-type"], "text/event-stream");
        assert_eq!(ann.headers["cache-control"], "no-cache");
        assert_eq!(ann.headers["x-accel-buffering"], "no");

        // A new stream starts with the demo's snapshot: the (empty) list.
        let opening = ann.next_group().await;
        assert_eq!(opening.events.len(), 1);
        assert_eq!(opening.events[0].event, "datastar-patch-elements");
        assert_eq!(opening.text(), "elements <ul id=\"todos\"></ul>");

        let todo = server
            .create("bob", "todos", json!({"title": "milk <b>"}))
            .await;
        let id = todo["id"].as_str().unwrap();
        let created = ann.next_group().await;
        assert_eq!(created.seq(), opening.seq() + 1);
        assert_eq!(
            created.text(),
            format!(
                "selector #todo-{id}\nmode remove\nselector #todos\nmode append\n\
                 elements <li id=\"todo-{id}\" class=\"open\"><span class=\"title\">milk &lt;b&gt;</span> \
                 <small class=\"owner\">bob</small></li>"
            )
        );

        let patched = server
            .patch("bob", "todos", id, json!({"done": true}))
            .await;
        assert_eq!(patched.status(), 200);
        let updated = ann.next_group().await;
        assert_eq!(updated.seq(), created.seq() + 1);
        assert!(
            updated
                .text()
                .starts_with(&format!("elements <li id=\"todo-{id}\" class=\"done\">")),
            "{updated:?}"
        );

        assert_eq!(server.delete("bob", "todos", id).await, 204);
        let removed = ann.next_group().await;
        assert_eq!(removed.seq(), updated.seq() + 1);
        assert_eq!(removed.text(), format!("selector #todo-{id}\nmode remove"));
    }
);

backend_tests!(
    async fn collections_without_a_renderer_use_the_default_signals(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.sse("ann", "notes:*").await;
        // No snapshot for notes: a new stream starts with its position only.
        let opening = ann.next_group().await;
        assert!(opening.events.is_empty(), "{opening:?}");

        let note = server
            .create("ann", "notes", json!({"body": "hi", "internal": "SECRET"}))
            .await;
        let id = note["id"].as_str().unwrap();
        let created = ann.next_group().await;
        assert_eq!(created.events.len(), 1);
        assert_eq!(
            created.events[0].signals(),
            json!({"tidings": {"notes": {id: {"id": id, "body": "hi", "owner_id": "ann"}}}})
        );
        assert!(!created.text().contains("SECRET"), "hidden field leaked");
    }
);

backend_tests!(
    async fn owner_only_notes_never_reach_another_users_stream(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.sse("ann", "notes:*").await;
        let mut star = server.sse("ann", "*").await;
        let opening = ann.next_group().await;
        star.next_group().await;

        let bobs = server
            .create("bob", "notes", json!({"body": "bob's"}))
            .await;
        // The marker is written after bob's note; ann sees it, so bob's would have come
        // first had it been delivered.
        let marker = server
            .create("ann", "notes", json!({"body": "marker"}))
            .await;
        for stream in [&mut ann, &mut star] {
            let first = stream.next_group().await;
            assert!(
                first.text().contains(marker["id"].as_str().unwrap()),
                "{first:?}"
            );
            assert!(!first.text().contains(bobs["id"].as_str().unwrap()));
            assert_eq!(
                first.seq(),
                opening.seq() + 2,
                "bob's note has the seq in between"
            );
        }
    }
);

backend_tests!(
    async fn refusals_have_the_protocol_codes(backend: Backend) {
        let extras = Extras {
            builder: Some(Box::new(|b| {
                b.rules(demo::rules().collection("news", Rule::Public, Rule::Deny))
            })),
            ..Extras::default()
        };
        let server =
            TestServer::start_with(backend, |c| c.sse.cookie_name = Some("tok".into()), extras)
                .await;
        let refused = async |request: reqwest::RequestBuilder, status: u16, code: &str| {
            let stream = SseStream::open(request).await;
            assert_eq!(stream.status, status, "expected {code}");
            assert_eq!(stream.error_code().await, code);
        };
        // No credentials where nothing is public.
        refused(server.sse_request("todos:*"), 401, "unauthorized").await;
        refused(server.sse_request("news:*,notes:*"), 401, "unauthorized").await;
        // Bad credentials are never taken for anonymous.
        let bad = server.sse_request("news:*").bearer_auth("not-a-token");
        refused(bad, 401, "unauthorized").await;
        let bad_cookie = server.sse_request("news:*").header("cookie", "tok=nope");
        refused(bad_cookie, 401, "unauthorized").await;
        // Patterns.
        let ann = token("ann");
        refused(
            server.sse_request("todos:[").bearer_auth(&ann),
            400,
            "invalid_pattern",
        )
        .await;
        refused(
            server.sse_request("bad name:*").bearer_auth(&ann),
            400,
            "invalid_pattern",
        )
        .await;
        refused(
            server.sse_request(" , ").bearer_auth(&ann),
            400,
            "bad_request",
        )
        .await;
        let no_topics = server
            .http()
            .get(server.url("/realtime/sse"))
            .bearer_auth(&ann);
        refused(no_topics, 400, "bad_request").await;
        let many = vec!["todos:1"; 101].join(",");
        refused(
            server.sse_request(&many).bearer_auth(&ann),
            400,
            "limit_exceeded",
        )
        .await;
        // A collection nobody may read.
        refused(
            server.sse_request("secrets:*").bearer_auth(&ann),
            403,
            "forbidden",
        )
        .await;
        refused(
            server.sse_request("todos:*,secrets:1").bearer_auth(&ann),
            403,
            "forbidden",
        )
        .await;

        // Accepted: anonymous on a public collection, the cookie, a bearer token.
        let news = SseStream::open(server.sse_request("news:*")).await;
        assert_eq!(news.status, 200);
        let cookie = server
            .sse_request("todos:*")
            .header("cookie", format!("a=b; tok={ann}"));
        assert_eq!(SseStream::open(cookie).await.status, 200);
        assert_eq!(
            SseStream::open(server.sse_request("*").bearer_auth(&ann))
                .await
                .status,
            200
        );
    }
);

backend_tests!(
    async fn anonymous_everything_is_refused_where_nothing_is_public(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        for topics in ["*", "to*:*", "todos:*"] {
            let stream = SseStream::open(server.sse_request(topics)).await;
            assert_eq!(stream.status, 401, "{topics}");
            assert_eq!(stream.headers["www-authenticate"], "Bearer");
            assert_eq!(stream.error_code().await, "unauthorized");
        }
    }
);

backend_tests!(
    async fn anonymous_streams_get_public_collections_only(backend: Backend) {
        let extras = Extras {
            builder: Some(Box::new(|b| {
                b.rules(demo::rules().collection("news", Rule::Public, Rule::Deny))
            })),
            ..Extras::default()
        };
        let server = TestServer::start_with(backend, |_| {}, extras).await;
        // `*` is fine anonymously because news is public; todos stay out of it.
        let mut anon = SseStream::open(server.sse_request("*")).await;
        assert_eq!(anon.status, 200);
        anon.next_group().await;
        server
            .create("bob", "todos", json!({"title": "private-ish"}))
            .await;
        server
            .broadcast_to("news", "headline", json!({"text": "extra"}))
            .await;
        let first = anon.next_group().await;
        assert_eq!(
            first.events[0].signals()["tidingsEvent"]["event"],
            "headline",
            "the todo must not reach an anonymous stream: {first:?}"
        );
    }
);

backend_tests!(
    async fn a_stream_ends_when_its_token_expires(backend: Backend) {
        let server = TestServer::start(backend, |c| {
            c.jwt.leeway = Duration::ZERO;
            c.auth.expiry_grace = Duration::from_millis(200);
        })
        .await;
        let short = sign(json!({"sub": "ann", "exp": now() + 2}));
        let mut stream = SseStream::open(server.sse_request("todos:*").bearer_auth(short)).await;
        assert_eq!(stream.status, 200);
        stream.next_group().await;
        assert_eq!(stream.ended().await, End::Clean);

        // An expiry too far ahead for the clock is no deadline, and no panic.
        let forever = sign(json!({"sub": "ann", "exp": u64::MAX / 2}));
        let mut stream = SseStream::open(server.sse_request("todos:*").bearer_auth(forever)).await;
        assert_eq!(stream.status, 200);
        stream.next_group().await;
    }
);

backend_tests!(
    async fn idle_streams_get_keep_alive_comments(backend: Backend) {
        let server = TestServer::start(backend, |c| {
            c.sse.keep_alive = Duration::from_millis(100);
        })
        .await;
        let mut stream = server.sse("ann", "todos:*").await;
        stream.next_group().await;
        for _ in 0..2 {
            assert_eq!(
                stream.next_item().await,
                Ok(Item::Comment("keep-alive".into()))
            );
        }
    }
);

backend_tests!(
    async fn shutdown_ends_streams_cleanly(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut stream = server.sse("ann", "todos:*").await;
        stream.next_group().await;
        assert!(
            tokio::time::timeout(WAIT, server.realtime.shutdown())
                .await
                .expect("shutdown timed out"),
            "background tasks did not stop"
        );
        assert_eq!(stream.ended().await, End::Clean);
    }
);

backend_tests!(
    async fn callbacks_pair_up_when_the_client_goes_away(backend: Backend) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, String, String)>();
        let extras = Extras {
            builder: Some(Box::new(move |b| {
                let on_sub = tx.clone();
                b.on_subscribe(move |pattern, id| {
                    let _ = on_sub.send(("subscribe", pattern.to_owned(), id.to_owned()));
                })
                .on_unsubscribe(move |pattern, id| {
                    let _ = tx.send(("unsubscribe", pattern.to_owned(), id.to_owned()));
                })
            })),
            ..Extras::default()
        };
        let server = TestServer::start_with(
            backend,
            // A short keep-alive makes a gone client show up as a failed write soon.
            |c| c.sse.keep_alive = Duration::from_millis(100),
            extras,
        )
        .await;
        let mut recv = async || {
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("callback timed out")
                .expect("channel open")
        };
        let mut stream = server.sse("ann", "todos:*,notes:*").await;
        stream.next_group().await;
        let (kind, first, id) = recv().await;
        let (kind2, second, id2) = recv().await;
        assert_eq!((kind, kind2), ("subscribe", "subscribe"));
        assert_eq!(id, id2);
        let mut subscribed = vec![first, second];
        subscribed.sort();
        assert_eq!(subscribed, ["notes:*", "todos:*"]);
        assert_eq!(
            server
                .realtime
                .metrics()
                .sse_streams
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );

        drop(stream);
        let mut ended = Vec::new();
        for _ in 0..2 {
            let (kind, pattern, gone) = recv().await;
            assert_eq!((kind, gone.as_str()), ("unsubscribe", id.as_str()));
            ended.push(pattern);
        }
        ended.sort();
        assert_eq!(ended, subscribed);
        assert_eq!(
            server
                .realtime
                .metrics()
                .sse_streams
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(
            server
                .realtime
                .metrics()
                .subscriptions
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
);

backend_tests!(
    async fn a_full_queue_ends_the_stream(backend: Backend) {
        let server = TestServer::start(backend, |c| c.sse.queue_capacity = 2).await;
        let mut stream = server.sse("ann", "todos:*").await;
        stream.next_group().await;
        // The client stops reading: once the socket buffers are full the stream's queue
        // fills, and the next broadcast finds it full and ends the stream.
        let big = "x".repeat(256 * 1024);
        let mut reached_all = 0;
        for _ in 0..2000 {
            let reached = server
                .realtime
                .datastar_broadcast("todos", |sse| {
                    sse.patch_elements(&format!("<p id=\"big\">{big}</p>"));
                })
                .unwrap();
            if reached == 0 {
                break;
            }
            reached_all += 1;
            tokio::task::yield_now().await;
        }
        assert!(reached_all < 2000, "the stream never overflowed");
        let overflows = server
            .realtime
            .metrics()
            .queue_overflows
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(overflows, 1);
        // What was written before the overflow still arrives, then the stream ends.
        assert_eq!(stream.ended().await, End::Clean);
    }
);

backend_tests!(
    async fn user_targeted_broadcasts_reach_the_users_streams_without_a_cursor(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.sse("ann", "todos:*").await;
        ann.next_group().await;
        server
            .realtime
            .broadcast(tidings::Broadcast::new(
                tidings::Target::Users(vec!["ann".into()]),
                "ping",
                json!({"n": 1}),
            ))
            .await
            .unwrap();
        let event = ann.next_event().await;
        assert_eq!(event.id, None);
        assert_eq!(
            event.signals(),
            json!({"tidingsEvent": {"collection": null, "event": "ping", "data": {"n": 1}, "key": null, "cursor": null}})
        );
        // The resume position did not move: the next record event is the next seq.
        let todo = server.create("bob", "todos", json!({"title": "t"})).await;
        let created = ann.next_group().await;
        assert!(created.text().contains(todo["id"].as_str().unwrap()));
        assert!(seq_of(&created.id) > 0);
    }
);

#[tokio::test]
async fn streams_over_the_node_limit_get_429_and_an_ended_stream_gives_its_place_back() {
    let server = TestServer::start(Backend::Sqlite, |c| c.connection.max_connections = 1).await;
    let first = server.sse("ann", "todos:*").await;
    let refused = SseStream::open(server.sse_request("todos:*").bearer_auth(token("bob"))).await;
    assert_eq!(refused.status, 429);
    // The client leaves; the server notices and gives the slot back.
    drop(first);
    let released = tokio::time::timeout(WAIT, async {
        while !server
            .realtime
            .metrics()
            .render()
            .contains("tidings_sse_streams 0\n")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "the ended stream kept its slot");
    server.sse("bob", "todos:*").await;
}
