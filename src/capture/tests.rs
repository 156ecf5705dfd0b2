//! Models capture cannot work for are refused with an error that names the cause.

use super::{Backend, CaptureError, sql};
use crate::model::{Field, FieldKind, Model};

/// A hand-written impl that does not list its fields.
#[derive(serde::Serialize, serde::Deserialize)]
struct Unlisted {
    id: String,
}

impl Model for Unlisted {
    const COLLECTION: &'static str = "unlisted";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// Lists its fields, but not the id, and names things that cannot be spliced.
#[derive(serde::Serialize, serde::Deserialize)]
struct Odd {
    key: String,
}

const ODD_FIELDS: &[Field] = &[Field::new("key", FieldKind::Text)];

impl Model for Odd {
    const COLLECTION: &'static str = "odd";
    fn id(&self) -> String {
        self.key.clone()
    }
    fn fields() -> &'static [Field] {
        ODD_FIELDS
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Quoted;

const QUOTED_FIELDS: &[Field] = &[Field::new("id", FieldKind::Text)];

impl Model for Quoted {
    const COLLECTION: &'static str = "notes";
    const TABLE: &'static str = "notes\"; DROP TABLE x; --";
    fn id(&self) -> String {
        String::new()
    }
    fn fields() -> &'static [Field] {
        QUOTED_FIELDS
    }
}

#[test]
fn unusable_models_are_refused_with_the_reason() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let error = sql::<Unlisted>(backend).unwrap_err();
        assert!(matches!(error, CaptureError::NoFields { .. }), "{error}");
        assert!(error.to_string().contains("#[derive(Model)]"), "{error}");

        let error = sql::<Odd>(backend).unwrap_err();
        assert!(
            matches!(&error, CaptureError::IdNotAField { id, .. } if id == "id"),
            "{error}"
        );

        let error = sql::<Quoted>(backend).unwrap_err();
        assert!(
            matches!(&error, CaptureError::InvalidName { kind: "table", .. }),
            "{error}"
        );
    }
    assert!(matches!(
        "oracle".parse::<Backend>(),
        Err(CaptureError::UnknownBackend(name)) if name == "oracle"
    ));
}
