//! What `#[derive(Model)]` generates is what a hand-written impl says.

use serde::{Deserialize, Serialize};
use tidings::model::{Field, FieldKind, Model, public_projection};

#[derive(Serialize, Deserialize, tidings::Model)]
#[tidings(collection = "notes", table = "app_notes")]
struct Note {
    #[tidings(id)]
    note_id: i64,
    body: String,
    #[tidings(rule)]
    owner_id: String,
    #[tidings(hidden, rule)]
    team: String,
    #[tidings(hidden)]
    internal: Option<String>,
    #[serde(rename = "is_done")]
    done: bool,
    ratio: Option<f64>,
    at: chrono::DateTime<chrono::Utc>,
    meta: serde_json::Value,
    #[tidings(json)]
    tags: Tags,
    #[serde(skip)]
    cache: u8,
}

#[derive(Serialize, Deserialize, Default)]
struct Tags(Vec<String>);

/// With no `#[tidings(id)]`, the field named `id` is the key; the table is the
/// collection.
#[derive(Serialize, Deserialize, tidings::Model)]
#[tidings(collection = "todos")]
struct Todo {
    id: String,
    title: String,
}

#[test]
fn constants_and_field_lists_follow_the_attributes() {
    assert_eq!(Note::COLLECTION, "notes");
    assert_eq!(Note::TABLE, "app_notes");
    assert_eq!(Note::ID_FIELD, "note_id");
    assert_eq!(Note::hidden_fields(), ["team", "internal"]);
    assert_eq!(Note::rule_fields(), ["owner_id", "team"]);
    let kinds: Vec<(&str, FieldKind)> = Note::fields().iter().map(|f| (f.name, f.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("note_id", FieldKind::Integer),
            ("body", FieldKind::Text),
            ("owner_id", FieldKind::Text),
            ("team", FieldKind::Text),
            ("internal", FieldKind::Text),
            ("is_done", FieldKind::Bool),
            ("ratio", FieldKind::Float),
            ("at", FieldKind::Timestamp),
            ("meta", FieldKind::Json),
            ("tags", FieldKind::Json),
        ]
    );

    assert_eq!(Todo::COLLECTION, "todos");
    assert_eq!(Todo::TABLE, "todos");
    assert_eq!(Todo::ID_FIELD, "id");
    assert!(Todo::hidden_fields().is_empty() && Todo::rule_fields().is_empty());
    assert_eq!(
        Todo::fields(),
        [
            Field::new("id", FieldKind::Text),
            Field::new("title", FieldKind::Text)
        ]
    );
}

#[test]
fn the_id_and_the_projection_work_like_a_hand_written_impl() {
    let note = Note {
        note_id: 42,
        body: "hi".into(),
        owner_id: "ann".into(),
        team: "red".into(),
        internal: Some("secret".into()),
        done: true,
        ratio: None,
        at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        meta: serde_json::json!({"a": 1}),
        tags: Tags::default(),
        cache: 0,
    };
    let _ = note.cache;
    assert_eq!(note.id(), "42");
    let projection = public_projection(&note);
    assert!(projection.get("internal").is_none() && projection.get("team").is_none());
    assert_eq!(projection["is_done"], true);
    let todo = Todo {
        id: "t1".into(),
        title: "milk".into(),
    };
    assert_eq!((todo.id(), todo.title.as_str()), ("t1".to_owned(), "milk"));
}
