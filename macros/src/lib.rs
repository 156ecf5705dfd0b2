//! `#[derive(Model)]` for [tidings](https://docs.rs/tidings): the `impl Model` a
//! model would otherwise write by hand, read from the struct and its attributes.
//!
//! Use it through `tidings::Model`, which names both the trait and this derive:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, tidings::Model)]
//! #[tidings(collection = "notes", table = "app_notes")]
//! struct Note {
//!     #[tidings(id)]
//!     id: String,
//!     body: String,
//!     #[tidings(rule)]
//!     owner_id: String,
//!     #[tidings(hidden)]
//!     internal: Option<String>,
//! }
//!
//! assert_eq!(<Note as tidings::Model>::TABLE, "app_notes");
//! ```
//!
//! See `docs/models.md` in the tidings repository for every attribute.

mod attrs;
mod expand;
mod kind;
mod serde_attrs;

use proc_macro::TokenStream;

/// Implements `tidings::model::Model` for a struct with named fields.
///
/// Container: `#[tidings(collection = "...")]` (required), `table = "..."` (default:
/// the collection). Fields: `#[tidings(id)]` (default: the field named `id`),
/// `#[tidings(hidden)]`, `#[tidings(rule)]`, `#[tidings(json)]` (the field is JSON
/// whatever its Rust type, for capture triggers on SQLite).
#[proc_macro_derive(Model, attributes(tidings))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    attrs::ModelDef::parse(&input)
        .map(|def| expand::model_impl(&input, &def))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
