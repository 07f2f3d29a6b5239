//! sqlx errors → core's [`StoreError`], deciding what is worth retrying.

use ferrogate_core::tenancy::StoreError;

/// Maps a database error: connection, pool and transient lock/serialization errors are
/// `Unavailable` (retryable), anything else the database said is `Database`.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| transient_code(&c)) => {
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Database(Box::new(e)),
    }
}

/// PostgreSQL SQLSTATEs are five characters: classes 08 (connection), 40 (serialization failure,
/// deadlock), 53 (insufficient resources), 57 (operator intervention, e.g. shutdown) pass.
/// SQLite's (extended) result codes are numbers whose low byte is the primary code: 5 BUSY,
/// 6 LOCKED pass.
fn transient_code(code: &str) -> bool {
    if code.len() == 5 {
        ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class))
    } else {
        code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
    }
}

/// Whether the error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether the error is a foreign-key violation.
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// A column could not be read as expected.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        for c in ["08006", "40001", "40P01", "53300", "57P01", "5", "6", "517", "261"] {
            assert!(transient_code(c), "{c}");
        }
        for c in ["23505", "23503", "42P01", "19", "2067", "787"] {
            assert!(!transient_code(c), "{c}");
        }
    }
}
