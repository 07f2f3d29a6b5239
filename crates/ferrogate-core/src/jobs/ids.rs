//! Identifiers of jobs, webhook endpoints and messages, files and batches: UUIDv7 text (time-ordered, so
//! lists sort by creation and pagination by id is stable), in newtypes so one is never passed as
//! another. Each carries a prefix (`job_`, `we_`, `msg_`, `file-`, `batch_`): clients and receivers see them.

use crate::id::id_type;

id_type!(
    /// Identifies a job on the durable queue (`job_<uuidv7>`).
    JobId,
    format!("job_{}", uuid::Uuid::now_v7().simple())
);
id_type!(
    /// Identifies a registered webhook endpoint (`we_<uuidv7>`).
    EndpointId,
    format!("we_{}", uuid::Uuid::now_v7().simple())
);
id_type!(
    /// Identifies one webhook message (`msg_<uuidv7>`): the `webhook-id` header, the same on every
    /// retry, so receivers can deduplicate.
    MessageId,
    format!("msg_{}", uuid::Uuid::now_v7().simple())
);

id_type!(
    /// Identifies an uploaded or generated file (`file-<uuidv7>`, OpenAI's shape).
    FileId,
    format!("file-{}", uuid::Uuid::now_v7().simple())
);
id_type!(
    /// Identifies a batch (`batch_<uuidv7>`, OpenAI's shape).
    BatchId,
    format!("batch_{}", uuid::Uuid::now_v7().simple())
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
