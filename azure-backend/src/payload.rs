//! Large values by reference: a value too big for a table property or a queue message is
//! stored in a blob named by its content hash under the instance's prefix, and replaced by
//! `{"$blob": "<name>"}`. Content addressing makes the write idempotent and race-free (one
//! name, one content); purge deletes the instance's prefix.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The stand-in stored instead of a large value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BlobRef {
    #[serde(rename = "$blob")]
    pub blob: String,
}

/// The blob name for `bytes` of an instance.
pub(crate) fn blob_name(instance_id: &str, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{instance_id}/sha256-{hex}")
}

/// Reads a stand-in, if `text` is one.
pub(crate) fn as_blob_ref(text: &str) -> Option<String> {
    if !text.starts_with("{\"$blob\"") {
        return None;
    }
    serde_json::from_str::<BlobRef>(text).ok().map(|r| r.blob)
}

/// The stand-in text for a blob.
pub(crate) fn blob_ref_text(blob: &str) -> String {
    serde_json::to_string(&BlobRef {
        blob: blob.to_owned(),
    })
    .unwrap_or_default()
}
