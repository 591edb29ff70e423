//! Joins with member metadata, and typed metadata helpers.

use pg_core::{GroupName, Meta, Pid};
use serde::{Deserialize, Serialize};

use super::Scope;
use crate::error::Error;

impl Scope {
    /// `pid` (a process of this node) joins `group` once more, and `meta`
    /// replaces its metadata there. Subscribers see a joined event with
    /// `meta` and the metadata it replaced. Visible to this node's reads
    /// when it returns; bounded by `max_meta_size`.
    pub fn join_with_meta(&self, pid: &Pid, group: &GroupName, meta: Meta) -> Result<(), Error> {
        let shared = &self.shared;
        shared.act(|c| {
            shared.check_alive(pid)?;
            Ok(c.scope.join_with_meta(pid, group, meta)?)
        })?
    }

    /// [`join_with_meta`](Self::join_with_meta) with `value` encoded with
    /// postcard (read it back with [`decode_meta`]).
    pub fn join_with_meta_typed<T: Serialize>(
        &self,
        pid: &Pid,
        group: &GroupName,
        value: &T,
    ) -> Result<(), Error> {
        self.join_with_meta(pid, group, encode_meta(value)?)
    }
}

/// `value` encoded with postcard as metadata (read it back with
/// [`decode_meta`]).
pub fn encode_meta<T: Serialize>(value: &T) -> Result<Meta, Error> {
    let bytes = crate::process::encode(value)?;
    Ok(Meta::new(&bytes[..]))
}

/// Decodes metadata written by
/// [`Scope::join_with_meta_typed`]: the whole of it must be one `T`.
pub fn decode_meta<'a, T: Deserialize<'a>>(meta: &'a Meta) -> Result<T, Error> {
    let (value, rest) =
        postcard::take_from_bytes(meta.as_bytes()).map_err(|e| Error::Encoding(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::Encoding(format!(
            "{} bytes of metadata left over: not the type that was joined with",
            rest.len()
        )));
    }
    Ok(value)
}
