#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
struct Note {
    id: String,
}

fn main() {}
