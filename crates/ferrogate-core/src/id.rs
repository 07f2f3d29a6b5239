//! `id_type!`: the identifier newtypes of the domain — tenants and keys (`tenancy::ids`), jobs,
//! webhook endpoints and messages, files and batches (`jobs::ids`) — one definition, so every id
//! is a distinct type with the same text form, serde, `Display` and `Debug`.

/// An identifier newtype over its text. `$generate` makes a fresh one.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $generate:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered identifier.
            pub fn generate() -> Self {
                Self($generate)
            }

            /// The identifier as text, as stored and shown.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

pub(crate) use id_type;
