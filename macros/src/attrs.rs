//! Reading `#[tidings(...)]` on the struct and its fields into a [`ModelDef`], with an
//! error spanned on whatever cannot work.

use proc_macro2::Span;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type, spanned::Spanned};

use crate::{kind, serde_attrs};

/// Everything the generated `impl Model` needs.
pub(crate) struct ModelDef {
    pub collection: LitStr,
    pub table: Option<LitStr>,
    /// The id field's Rust name (for `self.<id>`) and column name.
    pub id: (Ident, String),
    pub id_type: Type,
    pub hidden: Vec<String>,
    pub rules: Vec<String>,
    /// Every column of the model: name and `FieldKind` variant.
    pub columns: Vec<(String, &'static str)>,
}

/// One field's `#[tidings(...)]` flags.
#[derive(Default)]
struct Flags {
    id: Option<Span>,
    hidden: Option<Span>,
    rule: bool,
    json: bool,
}

impl ModelDef {
    pub(crate) fn parse(input: &DeriveInput) -> syn::Result<Self> {
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => &named.named,
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "#[derive(Model)] needs named fields: each field is a column",
                    ));
                }
            },
            Data::Enum(data) => {
                return Err(syn::Error::new(
                    data.enum_token.span,
                    "#[derive(Model)] works on structs only: a model is one table row",
                ));
            }
            Data::Union(data) => {
                return Err(syn::Error::new(
                    data.union_token.span,
                    "#[derive(Model)] works on structs only: a model is one table row",
                ));
            }
        };
        serde_attrs::container(&input.attrs)?;
        let (collection, table) = container(input)?;

        let mut id: Option<(Ident, String, Type, Span)> = None;
        let mut named_id: Option<(Ident, String, Type)> = None;
        let mut hidden = Vec::new();
        let mut rules = Vec::new();
        let mut columns = Vec::new();
        for field in fields {
            let ident = field.ident.clone().expect("named fields have names");
            let flags = field_flags(field)?;
            let serde = serde_attrs::field(&field.attrs)?;
            let column = match &serde.rename {
                Some(lit) => {
                    check_identifier(lit.value(), lit.span(), "column")?;
                    lit.value()
                }
                None => {
                    let name = ident.to_string();
                    let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
                    check_identifier(name, ident.span(), "column")?
                }
            };
            if serde.skipped {
                if flags.id.is_some() || flags.hidden.is_some() || flags.rule {
                    return Err(syn::Error::new(
                        ident.span(),
                        "a field serde skips is not a column: it cannot be the id, hidden or a rule field",
                    ));
                }
                continue;
            }
            if let Some(span) = flags.id {
                if let Some(hidden_span) = flags.hidden {
                    let mut error = syn::Error::new(
                        hidden_span,
                        "the id field cannot be hidden: it is the event key, part of every topic",
                    );
                    error.combine(syn::Error::new(span, "marked as the id here"));
                    return Err(error);
                }
                if let Some((first, ..)) = &id {
                    let mut error = syn::Error::new(span, "only one field can be #[tidings(id)]");
                    error.combine(syn::Error::new(first.span(), "the first id field"));
                    return Err(error);
                }
                id = Some((ident.clone(), column.clone(), field.ty.clone(), span));
            } else if column == "id" && flags.hidden.is_none() {
                named_id = Some((ident.clone(), column.clone(), field.ty.clone()));
            }
            if flags.hidden.is_some() {
                hidden.push(column.clone());
            }
            if flags.rule {
                rules.push(column.clone());
            }
            let kind = if flags.json {
                "Json"
            } else {
                kind::of(&field.ty)
            };
            columns.push((column, kind));
        }
        let (id_ident, id_column, id_type) = match (id, named_id) {
            (Some((ident, column, ty, _)), _) => (ident, column, ty),
            (None, Some(named)) => named,
            (None, None) => {
                return Err(syn::Error::new(
                    input.ident.span(),
                    "no id field: mark the key field with #[tidings(id)] (or name it `id`)",
                ));
            }
        };
        Ok(Self {
            collection,
            table,
            id: (id_ident, id_column),
            id_type,
            hidden,
            rules,
            columns,
        })
    }
}

/// `collection = "..."` (required) and `table = "..."` on the struct.
fn container(input: &DeriveInput) -> syn::Result<(LitStr, Option<LitStr>)> {
    let mut collection: Option<LitStr> = None;
    let mut table: Option<LitStr> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("tidings")) {
        attr.parse_nested_meta(|meta| {
            let slot = if meta.path.is_ident("collection") {
                &mut collection
            } else if meta.path.is_ident("table") {
                &mut table
            } else {
                return Err(meta.error(format!(
                    "unknown tidings attribute `{}` on a struct: expected `collection` or `table`",
                    path_name(&meta.path)
                )));
            };
            if slot.is_some() {
                return Err(meta.error("given twice"));
            }
            *slot = Some(meta.value()?.parse()?);
            Ok(())
        })?;
    }
    let Some(collection) = collection else {
        return Err(syn::Error::new(
            input.ident.span(),
            "missing #[tidings(collection = \"...\")]: the collection names the model's topics",
        ));
    };
    let name = collection.value();
    let valid = (1..=64).contains(&name.chars().count())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(syn::Error::new(
            collection.span(),
            "invalid collection name: expected 1-64 characters of [A-Za-z0-9_-]",
        ));
    }
    if let Some(table) = &table {
        check_identifier(table.value(), table.span(), "table")?;
    }
    // Without `table`, the collection is the table, so it must be an identifier too.
    if table.is_none() && name.contains('-') {
        return Err(syn::Error::new(
            collection.span(),
            "this collection name is not a table name ('-'): add #[tidings(table = \"...\")]",
        ));
    }
    Ok((collection, table))
}

/// `id`, `hidden`, `rule` and `json` on a field.
fn field_flags(field: &syn::Field) -> syn::Result<Flags> {
    let mut flags = Flags::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("tidings")) {
        attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("id") {
                flags.id = Some(span);
            } else if meta.path.is_ident("hidden") {
                flags.hidden = Some(span);
            } else if meta.path.is_ident("rule") {
                flags.rule = true;
            } else if meta.path.is_ident("json") {
                flags.json = true;
            } else {
                return Err(meta.error(format!(
                    "unknown tidings attribute `{}` on a field: expected `id`, `hidden`, `rule` or `json`",
                    path_name(&meta.path)
                )));
            }
            Ok(())
        })?;
    }
    Ok(flags)
}

/// Table and column names are spliced into SQL, so the store accepts only ASCII
/// letters, digits and `_`, at most 63 bytes: refuse anything else at compile time.
fn check_identifier(name: String, span: Span, kind: &str) -> syn::Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(name)
    } else {
        Err(syn::Error::new(
            span,
            format!("invalid {kind} name {name:?}: expected 1-63 characters of [A-Za-z0-9_]"),
        ))
    }
}

fn path_name(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}
