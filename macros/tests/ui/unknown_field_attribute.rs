#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes")]
struct Note {
    id: String,
    #[tidings(secret)]
    body: String,
}

fn main() {}
