//! The generated `impl tidings::model::Model`: exactly the items a hand-written impl
//! provides, plus the field list that capture triggers are generated from.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{DeriveInput, spanned::Spanned};

use crate::attrs::ModelDef;

pub(crate) fn model_impl(input: &DeriveInput, def: &ModelDef) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let collection = &def.collection;
    let table = def
        .table
        .as_ref()
        .map(|table| quote!(const TABLE: &'static str = #table;));
    let (id_ident, id_column) = &def.id;
    // Spanned on the id's type, so a type without Display is reported there.
    let id_body = quote_spanned! {def.id_type.span()=>
        ::std::string::ToString::to_string(&self.#id_ident)
    };
    let hidden = &def.hidden;
    let rules = &def.rules;
    let fields = def.columns.iter().map(|(name, kind)| {
        let kind = format_ident!("{}", kind);
        quote!(::tidings::model::Field::new(#name, ::tidings::model::FieldKind::#kind))
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics ::tidings::model::Model for #ident #type_generics #where_clause {
            const COLLECTION: &'static str = #collection;
            #table
            const ID_FIELD: &'static str = #id_column;

            fn id(&self) -> ::std::string::String {
                #id_body
            }

            fn hidden_fields() -> &'static [&'static str] {
                &[#(#hidden),*]
            }

            fn rule_fields() -> &'static [&'static str] {
                &[#(#rules),*]
            }

            fn fields() -> &'static [::tidings::model::Field] {
                const FIELDS: &[::tidings::model::Field] = &[#(#fields),*];
                FIELDS
            }
        }
    }
}
