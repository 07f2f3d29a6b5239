//! Files (OpenAI's `/v1/files`): batch input uploads and the output and error files batches
//! write, each owned by a tenant, with a size cap per file and a byte quota per tenant.
//!
//! Invariants: every read names the tenant, so another tenant's file is simply not found (404);
//! contents are UTF-8 text (JSONL) without NUL bytes, stored in the database.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::ids::FileId;
use super::records::Page;
use crate::tenancy::{InvalidInput, StoreError, TenantId};

/// What a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilePurpose {
    /// A batch's input (`purpose="batch"`).
    Batch,
    /// A batch's output or error file, written by the gateway.
    BatchOutput,
}

impl FilePurpose {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FilePurpose::Batch => "batch",
            FilePurpose::BatchOutput => "batch_output",
        }
    }
}

impl FromStr for FilePurpose {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "batch" => Ok(FilePurpose::Batch),
            "batch_output" => Ok(FilePurpose::BatchOutput),
            other => Err(InvalidInput(format!("unsupported file purpose '{other}' (supported: batch)"))),
        }
    }
}

impl fmt::Display for FilePurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FilePurpose {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A stored file's metadata (the `file` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileObject {
    /// `file-…`.
    pub id: FileId,
    /// The owner.
    pub tenant_id: TenantId,
    /// What it is for.
    pub purpose: FilePurpose,
    /// The name it was uploaded under.
    pub filename: String,
    /// Its size.
    pub bytes: u64,
    /// Unix ms.
    pub created_at_ms: i64,
}

/// Caps on files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Largest file, bytes.
    pub max_file_bytes: u64,
    /// Most bytes one tenant may hold in files.
    pub tenant_quota_bytes: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self { max_file_bytes: 100 * 1024 * 1024, tenant_quota_bytes: 1024 * 1024 * 1024 }
    }
}

/// A file to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// The owner.
    pub tenant_id: TenantId,
    /// What it is for.
    pub purpose: FilePurpose,
    /// 1 to 255 bytes, no control characters or path separators.
    pub filename: String,
    /// The content.
    pub content: String,
}

impl NewFile {
    /// Refuses bad names, NUL bytes and files over the cap (the quota is the store's check).
    pub fn validate(&self, limits: &FileLimits) -> Result<(), InvalidInput> {
        let f = &self.filename;
        if f.is_empty() || f.len() > 255 || f.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(InvalidInput("filename must be 1 to 255 bytes without control characters or slashes".into()));
        }
        if self.content.contains('\0') {
            return Err(InvalidInput("file content must not contain NUL bytes".into()));
        }
        let bytes = u64::try_from(self.content.len()).unwrap_or(u64::MAX);
        if bytes > limits.max_file_bytes {
            return Err(InvalidInput(format!(
                "the file is {bytes} bytes; at most {} are allowed",
                limits.max_file_bytes
            )));
        }
        Ok(())
    }
}

/// The message of a refused upload over the tenant's quota.
pub fn quota_exceeded(used: u64, adding: u64, quota: u64) -> InvalidInput {
    InvalidInput(format!("file storage quota exceeded: {used} bytes stored + {adding} > {quota} allowed"))
}

/// Files, always within one tenant.
#[async_trait::async_trait]
pub trait FileStore: Send + Sync {
    /// Stores a file: [`StoreError::Invalid`] over the size cap or the tenant's quota.
    async fn create_file(&self, new: NewFile, limits: &FileLimits) -> Result<FileObject, StoreError>;
    /// Stores a file under `id` unless one with that id exists, which is then returned
    /// unchanged: writers that may run twice (a batch's output after a crash, two instances
    /// finishing one batch) store one file.
    async fn create_file_once(&self, id: &FileId, new: NewFile, limits: &FileLimits) -> Result<FileObject, StoreError>;
    /// The tenant's file.
    async fn get_file(&self, tenant: &TenantId, id: &FileId) -> Result<Option<FileObject>, StoreError>;
    /// The tenant's file's content.
    async fn file_content(&self, tenant: &TenantId, id: &FileId) -> Result<Option<String>, StoreError>;
    /// The tenant's files (optionally of one purpose), oldest first.
    async fn list_files(
        &self,
        tenant: &TenantId,
        purpose: Option<FilePurpose>,
        page: &Page,
    ) -> Result<Vec<FileObject>, StoreError>;
    /// Deletes the tenant's file; `false` if it has none by that id.
    async fn delete_file(&self, tenant: &TenantId, id: &FileId) -> Result<bool, StoreError>;
    /// Bytes the tenant holds in files.
    async fn tenant_file_bytes(&self, tenant: &TenantId) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> NewFile {
        NewFile { tenant_id: "t".into(), purpose: FilePurpose::Batch, filename: name.into(), content: content.into() }
    }

    #[test]
    fn uploads_are_validated() {
        let limits = FileLimits { max_file_bytes: 10, tenant_quota_bytes: 100 };
        assert!(file("in.jsonl", "{}").validate(&limits).is_ok());
        for bad in [file("", "{}"), file("a/b", "{}"), file("a\nb", "{}"), file("x", "a\0b"), file("x", "12345678901")]
        {
            assert!(bad.validate(&limits).is_err(), "{bad:?}");
        }
        assert_eq!("batch".parse::<FilePurpose>().ok(), Some(FilePurpose::Batch));
        assert!("fine-tune".parse::<FilePurpose>().is_err());
        assert!(quota_exceeded(90, 20, 100).0.contains("quota"));
    }
}
