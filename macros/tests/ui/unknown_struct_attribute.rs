#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes", schema = "app")]
struct Note {
    id: String,
}

fn main() {}
