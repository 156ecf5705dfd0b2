#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes")]
struct Note {
    id: Vec<u8>,
}

fn main() {}
