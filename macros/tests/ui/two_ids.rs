#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes")]
struct Note {
    #[tidings(id)]
    id: String,
    #[tidings(id)]
    other: String,
}

fn main() {}
