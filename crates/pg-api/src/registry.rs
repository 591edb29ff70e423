//! The registry on an [`Instance`]: one process per key, cluster wide
//! (docs/semantics.md#registry). Each call is checked as the instance's
//! principal: `pg.register` / `pg.unregister` / `pg.lookup` on each key,
//! `pg.registrations` on the scope id (or the prefix), and
//! `pg.monitor_registry` on the key, prefix or scope id.

use pg_core::{CommandError, GroupName, Meta, Pid, RegistryEvent};
use pg_runtime::{Pattern, Registration, Subscription};
use serde::Serialize;

use crate::error::PgError;
use crate::instance::Instance;
use crate::permission::Permission;

/// What a registration attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The key is this process's (new, or its metadata updated in place).
    Registered,
    /// Another process holds the key; nothing changed.
    Taken {
        /// The holder.
        by: Pid,
    },
}

impl Instance {
    fn key(&self, key: &str, permission: Permission) -> Result<GroupName, PgError> {
        let name = GroupName::new(key).map_err(|e| PgError::invalid(format!("key: {e}")))?;
        self.check(permission, key)?;
        Ok(name)
    }

    /// Checks a key and the permission without building a name (reads are
    /// hot: no allocation).
    fn check_key(&self, key: &str, permission: Permission) -> Result<(), PgError> {
        if key.is_empty() || key.len() > pg_core::MAX_GROUP_NAME_LEN {
            return Err(PgError::invalid(format!(
                "key: must be 1 to {} bytes, got {}",
                pg_core::MAX_GROUP_NAME_LEN,
                key.len()
            )));
        }
        self.check(permission, key)
    }

    fn outcome(result: Result<(), pg_runtime::Error>) -> Result<RegisterOutcome, PgError> {
        match result {
            Ok(()) => Ok(RegisterOutcome::Registered),
            Err(pg_runtime::Error::Command(CommandError::Taken { by, .. })) => {
                Ok(RegisterOutcome::Taken { by })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Registers this process under `key` (`pg.register` on the key), with
    /// no metadata; see [`register_with_meta`](Self::register_with_meta).
    pub fn register(&self, key: &str) -> Result<RegisterOutcome, PgError> {
        self.register_inner(key, None)
    }

    /// Registers this process under `key` with `meta`: `Registered`, or
    /// `Taken` with the holder. Re-registering its own key replaces the
    /// metadata in place. Decided on this node from what it knows; see
    /// docs/semantics.md#registry for what happens when two nodes that
    /// cannot see each other both succeed.
    pub fn register_with_meta(
        &self,
        key: &str,
        meta: impl Into<Meta>,
    ) -> Result<RegisterOutcome, PgError> {
        self.register_inner(key, Some(meta.into()))
    }

    /// [`register_with_meta`](Self::register_with_meta) with `value`
    /// encoded with postcard (read back with [`decode_meta`](crate::decode_meta)).
    pub fn register_typed<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<RegisterOutcome, PgError> {
        let meta = pg_runtime::encode_meta(value)?;
        self.register_inner(key, Some(meta))
    }

    fn register_inner(&self, key: &str, meta: Option<Meta>) -> Result<RegisterOutcome, PgError> {
        self.live()?;
        let key = self.key(key, Permission::Register)?;
        Self::outcome(self.scope.register(self.pid(), &key, meta))
    }

    /// Registers this process under every key of `entries` in one step
    /// (`pg.register` on each): all or nothing; `Taken` names the holder of
    /// the first key held by another process.
    pub fn register_many(
        &self,
        entries: &[(&str, Option<Meta>)],
    ) -> Result<RegisterOutcome, PgError> {
        self.live()?;
        let entries = entries
            .iter()
            .map(|(k, m)| Ok((self.key(k, Permission::Register)?, m.clone())))
            .collect::<Result<Vec<_>, PgError>>()?;
        Self::outcome(self.scope.register_many(self.pid(), &entries))
    }

    /// Gives up `key` (`pg.unregister`); `Invalid` if this process does not
    /// hold it.
    pub fn unregister(&self, key: &str) -> Result<(), PgError> {
        self.live()?;
        let key = self.key(key, Permission::Unregister)?;
        self.scope.unregister(self.pid(), &key).map_err(Into::into)
    }

    /// Gives up each of `keys` this process holds, in one step
    /// (`pg.unregister` on each, all checked first); returns how many it held.
    pub fn unregister_many(&self, keys: &[&str]) -> Result<usize, PgError> {
        self.live()?;
        let keys = keys
            .iter()
            .map(|k| self.key(k, Permission::Unregister))
            .collect::<Result<Vec<_>, PgError>>()?;
        self.scope
            .unregister_many(self.pid(), &keys)
            .map_err(Into::into)
    }

    /// The process holding `key`, with its metadata (`pg.lookup`).
    pub fn lookup(&self, key: &str) -> Result<Option<(Pid, Option<Meta>)>, PgError> {
        self.live()?;
        self.check_key(key, Permission::Lookup)?;
        Ok(self.scope.lookup(key))
    }

    /// Those of `keys` that are registered (`pg.lookup` on each).
    pub fn contains_keys(&self, keys: &[&str]) -> Result<Vec<GroupName>, PgError> {
        self.live()?;
        for key in keys {
            self.check_key(key, Permission::Lookup)?;
        }
        Ok(self.scope.contains_keys(keys))
    }

    /// Number of keys registered (`pg.registrations` on the scope id).
    pub fn registered_count(&self) -> Result<usize, PgError> {
        self.live()?;
        self.check(Permission::Registrations, self.id())?;
        Ok(self.scope.registered_count())
    }

    /// Number of keys held by this node's processes (`pg.registrations`).
    pub fn local_registered_count(&self) -> Result<usize, PgError> {
        self.live()?;
        self.check(Permission::Registrations, self.id())?;
        Ok(self.scope.local_registered_count())
    }

    /// Keeps the registrations whose key the principal may `pg.lookup`.
    fn visible(&self, all: Vec<Registration>) -> Vec<Registration> {
        all.into_iter()
            .filter(|(key, _, _)| self.allows(Permission::Lookup, key.as_str()))
            .collect()
    }

    /// The keys this node's processes hold (`pg.registrations`; only keys
    /// the principal may `pg.lookup`).
    pub fn local_registrations(&self) -> Result<Vec<Registration>, PgError> {
        self.live()?;
        self.check(Permission::Registrations, self.id())?;
        Ok(self.visible(self.scope.local_registrations()))
    }

    /// The whole registry, in key order (`pg.registrations`; only keys the
    /// principal may `pg.lookup`).
    pub fn dump(&self) -> Result<Vec<Registration>, PgError> {
        self.live()?;
        self.check(Permission::Registrations, self.id())?;
        Ok(self.visible(self.scope.registrations()))
    }

    /// Registrations whose key starts with `prefix` (`pg.registrations` on
    /// the prefix).
    pub fn registrations_prefix(&self, prefix: &str) -> Result<Vec<Registration>, PgError> {
        self.live()?;
        if prefix.is_empty() {
            return Err(PgError::invalid("empty prefix (every key: use dump)"));
        }
        self.check(Permission::Registrations, prefix)?;
        Ok(self.visible(self.scope.registrations_prefix(prefix)))
    }

    /// Registry events (`registered`, with `previous_meta` on an in-place
    /// update; `unregistered`, with a reason) for the keys `pattern`
    /// matches, with their registrations at the same instant
    /// (`pg.monitor_registry` on the key, the prefix, or the scope id for
    /// `All`; then only keys the principal may `pg.lookup`). The
    /// subscription ends with this instance's process.
    pub fn monitor_registry(
        &self,
        pattern: Pattern,
    ) -> Result<(Subscription<RegistryEvent>, Vec<Registration>), PgError> {
        self.live()?;
        let resource = match &pattern {
            Pattern::Exact(key) => key.as_str().to_owned(),
            Pattern::Prefix(prefix) if prefix.is_empty() => {
                return Err(PgError::invalid("empty prefix (every key: Pattern::All)"));
            }
            Pattern::Prefix(prefix) => prefix.to_string(),
            Pattern::All => self.id().to_owned(),
        };
        self.check(Permission::MonitorRegistry, &resource)?;
        let allow = self.group_filter(Permission::Lookup);
        self.scope
            .monitor_registry(pattern, Some(allow), Some(self.pid()))
            .map_err(Into::into)
    }
}
