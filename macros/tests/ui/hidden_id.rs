#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes")]
struct Note {
    #[tidings(id, hidden)]
    id: String,
    body: String,
}

fn main() {}
