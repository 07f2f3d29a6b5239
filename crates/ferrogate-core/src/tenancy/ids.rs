//! Identifiers of tenants and keys: UUIDv7 strings (time-ordered, so lists sort by creation and
//! B-tree inserts stay local), wrapped in newtypes so a tenant id is never passed as a key id.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered identifier (UUIDv7).
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a tenant (a team); stable for the tenant's life, unlike its name.
    TenantId
);
id_type!(
    /// Identifies an API key record; stable across rotations (the secret changes, the id does not).
    KeyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_and_time_ordered() {
        let a = KeyId::generate();
        let b = KeyId::generate();
        assert_ne!(a, b);
        assert!(a < b, "UUIDv7 sorts by creation");
        assert_eq!(format!("{:?}", TenantId::from("t")), "TenantId(\"t\")");
    }
}
