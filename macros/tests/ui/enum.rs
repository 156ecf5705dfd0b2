#[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
#[tidings(collection = "notes")]
enum Note {
    Short(String),
}

fn main() {}
