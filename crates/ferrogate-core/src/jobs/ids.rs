//! Identifiers of jobs, webhook endpoints and messages, files and batches: UUIDv7 text (time-ordered, so
//! lists sort by creation and pagination by id is stable), in newtypes so one is never passed as
//! another. Each carries a prefix (`job_`, `we_`, `msg_`, `file-`, `batch_`): clients and receivers see them.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered identifier.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "{}"), uuid::Uuid::now_v7().simple()))
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
    /// Identifies a job on the durable queue (`job_<uuidv7>`).
    JobId,
    "job_"
);
id_type!(
    /// Identifies a registered webhook endpoint (`we_<uuidv7>`).
    EndpointId,
    "we_"
);
id_type!(
    /// Identifies one webhook message (`msg_<uuidv7>`): the `webhook-id` header, the same on every
    /// retry, so receivers can deduplicate.
    MessageId,
    "msg_"
);

id_type!(
    /// Identifies an uploaded or generated file (`file-<uuidv7>`, OpenAI's shape).
    FileId,
    "file-"
);
id_type!(
    /// Identifies a batch (`batch_<uuidv7>`, OpenAI's shape).
    BatchId,
    "batch_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_distinct_and_time_ordered() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert!(a.as_str().starts_with("job_") && a.as_str().len() == 36, "{a}");
        assert!(a < b);
        assert!(MessageId::generate().as_str().starts_with("msg_"));
        assert!(EndpointId::generate().as_str().starts_with("we_"));
    }
}
