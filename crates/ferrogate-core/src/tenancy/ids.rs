//! Identifiers of tenants and keys: UUIDv7 strings (time-ordered, so lists sort by creation and
//! B-tree inserts stay local), wrapped in newtypes so a tenant id is never passed as a key id.

use crate::id::id_type;

id_type!(
    /// Identifies a tenant (a team); stable for the tenant's life, unlike its name.
    TenantId,
    uuid::Uuid::now_v7().to_string()
);
id_type!(
    /// Identifies an API key record; stable across rotations (the secret changes, the id does not).
    KeyId,
    uuid::Uuid::now_v7().to_string()
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
