#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes", table = "app notes; drop table x")]
struct Note {
    id: String,
}

fn main() {}
