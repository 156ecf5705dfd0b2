//! What a field's Rust type says about how its value looks in JSON, which the capture
//! triggers need on SQLite (where a column's storage class does not tell a boolean
//! from an integer, nor JSON from text).

use syn::{GenericArgument, PathArguments, Type};

/// The `tidings::model::FieldKind` variant for a field type, by the type's last path
/// segment, looking through `Option<...>`. A type it does not know is `Other`: its
/// value is taken as stored.
pub(crate) fn of(ty: &Type) -> &'static str {
    let Some(segment) = last_segment(ty) else {
        return "Other";
    };
    let name = segment.ident.to_string();
    match name.as_str() {
        "Option" => match &segment.arguments {
            PathArguments::AngleBracketed(args) => match args.args.first() {
                Some(GenericArgument::Type(inner)) => of(inner),
                _ => "Other",
            },
            _ => "Other",
        },
        "bool" => "Bool",
        "f32" | "f64" => "Float",
        "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize" => {
            "Integer"
        }
        "String" | "str" | "char" | "Cow" => "Text",
        "DateTime" => "Timestamp",
        "Value" | "Json" | "Vec" | "HashMap" | "BTreeMap" => "Json",
        _ => "Other",
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Reference(reference) => last_segment(&reference.elem),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}
