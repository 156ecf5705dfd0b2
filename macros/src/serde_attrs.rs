//! The few serde attributes that change a column name: a field's `rename`, `skip`, and
//! a container's `rename_all` (refused, rather than reimplemented).

use syn::{Attribute, LitStr, Token, meta::ParseNestedMeta};

/// What serde's attributes say about one field.
#[derive(Default)]
pub(crate) struct SerdeField {
    /// `#[serde(rename = "...")]` or `rename(serialize = "...")`.
    pub rename: Option<LitStr>,
    /// `skip` or `skip_serializing`: not a column of the event.
    pub skipped: bool,
}

pub(crate) fn field(attrs: &[Attribute]) -> syn::Result<SerdeField> {
    let mut out = SerdeField::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if meta.input.peek(Token![=]) {
                    out.rename = Some(meta.value()?.parse()?);
                } else {
                    meta.parse_nested_meta(|inner| {
                        if inner.path.is_ident("serialize") {
                            out.rename = Some(inner.value()?.parse()?);
                            Ok(())
                        } else {
                            skip(&inner)
                        }
                    })?;
                }
                Ok(())
            } else if meta.path.is_ident("skip") || meta.path.is_ident("skip_serializing") {
                out.skipped = true;
                skip(&meta)
            } else {
                skip(&meta)
            }
        })?;
    }
    Ok(out)
}

/// Refuses `#[serde(rename_all = ...)]` on the container: the derive would name the
/// columns differently from serde.
pub(crate) fn container(attrs: &[Attribute]) -> syn::Result<()> {
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                return Err(meta.error(
                    "#[derive(Model)] does not follow serde's rename_all: \
                     rename each field with #[serde(rename = \"...\")] instead",
                ));
            }
            skip(&meta)
        })?;
    }
    Ok(())
}

/// Consumes an attribute entry this derive does not care about, whatever its shape.
fn skip(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip(&inner))?;
    }
    Ok(())
}
