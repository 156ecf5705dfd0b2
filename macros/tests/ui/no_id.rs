#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes")]
struct Note {
    note_id: String,
    body: String,
}

fn main() {}
