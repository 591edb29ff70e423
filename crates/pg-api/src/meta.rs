//! Member metadata on an [`Instance`]: join with metadata, read members
//! with theirs. A process's metadata in a group is replaced in place by
//! each join that carries some, kept by a plain join, and gone when it
//! leaves the group for good (docs/semantics.md#metadata).

use pg_core::{Meta, Pid};
use serde::Serialize;

use crate::error::PgError;
use crate::instance::Instance;
use crate::permission::Permission;

impl Instance {
    /// Joins `group` once more with `meta` (`pg.join` on the group): a
    /// first join sets the process's metadata there, a re-join replaces it
    /// in place. Subscribers see a joined event carrying `meta` and the
    /// metadata it replaced. Metadata over the scope's `max_meta_size` is
    /// refused (`LimitExceeded`) and changes nothing.
    pub fn join_with_meta(&self, group: &str, meta: impl Into<Meta>) -> Result<(), PgError> {
        self.live()?;
        let group = self.group(group, Permission::Join)?;
        self.scope
            .join_with_meta(self.pid(), &group, meta.into())
            .map_err(Into::into)
    }

    /// [`join_with_meta`](Self::join_with_meta) with `value` encoded with
    /// postcard; read it back with [`decode_meta`](crate::decode_meta).
    pub fn join_with_meta_typed<T: Serialize>(
        &self,
        group: &str,
        value: &T,
    ) -> Result<(), PgError> {
        self.live()?;
        let group = self.group(group, Permission::Join)?;
        self.scope
            .join_with_meta_typed(self.pid(), &group, value)
            .map_err(Into::into)
    }

    /// Members of `group` on every node, each process once with its join
    /// count and metadata (`pg.get_members`); this node's first. A copy of
    /// one snapshot: for a large group,
    /// [`get_members`](Self::get_members) and
    /// [`Members::iter_with_meta`](crate::Members::iter_with_meta) read the
    /// same without copying.
    pub fn get_members_with_meta(
        &self,
        group: &str,
    ) -> Result<Vec<(Pid, u32, Option<Meta>)>, PgError> {
        Ok(self.get_members(group)?.iter_with_meta().collect())
    }

    /// As [`get_members_with_meta`](Self::get_members_with_meta), for this
    /// node's members (`pg.get_local_members`).
    pub fn get_local_members_with_meta(
        &self,
        group: &str,
    ) -> Result<Vec<(Pid, u32, Option<Meta>)>, PgError> {
        Ok(self.get_local_members(group)?.iter_with_meta().collect())
    }
}
