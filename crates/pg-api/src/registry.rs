//! The registry on an [`Instance`]: one process per key, cluster wide
//! (docs/semantics.md#registry). Each call is checked as the instance's
//! principal: `pg.register` / `pg.unregister` / `pg.lookup` on each key,
//! `pg.registrations` on the scope id (or the prefix), and
//! `pg.monitor_registry` on the key, prefix or scope id.

use pg_core::{CommandError, GroupName, Meta, Pid, RegisterSpec, RegistryEvent};
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

/// How to register a key, beyond the key: metadata, a tag, and whether the
/// process ends should its registration lose a conflict. Built with
/// [`RegisterOptions::new`] and its setters; `Default` is a plain
/// registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterOptions {
    meta: Option<Meta>,
    tag: Option<String>,
    exit_on_loss: bool,
}

impl RegisterOptions {
    /// A plain registration: no metadata, no tag, the process lives on if
    /// it loses.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata, read back by lookups and events.
    pub fn meta(mut self, meta: impl Into<Meta>) -> Self {
        self.meta = Some(meta.into());
        self
    }

    /// Metadata encoded with postcard (read back with
    /// [`decode_meta`](crate::decode_meta)).
    pub fn meta_typed<T: Serialize>(mut self, value: &T) -> Result<Self, PgError> {
        self.meta = Some(pg_runtime::encode_meta(value)?);
        Ok(self)
    }

    /// A label: [`Instance::match_tag`] lists every key registered with it,
    /// cluster wide (1 to 1024 bytes).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Should the registration lose a conflict, end the process: its
    /// mailbox yields the conflict notice (on
    /// [`REGISTRY_CONFLICT_TOPIC`](crate::REGISTRY_CONFLICT_TOPIC)), then
    /// `None`, and everything it held is cleaned up, as when a
    /// supervisor-style registry kills the loser.
    pub fn exit_on_loss(mut self, exit: bool) -> Self {
        self.exit_on_loss = exit;
        self
    }

    fn into_spec(self) -> Result<RegisterSpec, PgError> {
        let tag = self
            .tag
            .map(|t| GroupName::new(&t).map_err(|e| PgError::invalid(format!("tag: {e}"))))
            .transpose()?;
        Ok(RegisterSpec {
            meta: self.meta,
            tag,
            exit_on_loss: self.exit_on_loss,
        })
    }
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

    /// Registers this process under `key` as `options` say (metadata, a
    /// tag, ending the process on a lost conflict); otherwise as
    /// [`register_with_meta`](Self::register_with_meta). Re-registering its
    /// own key replaces all of them in place.
    pub fn register_with(
        &self,
        key: &str,
        options: RegisterOptions,
    ) -> Result<RegisterOutcome, PgError> {
        self.live()?;
        let key = self.key(key, Permission::Register)?;
        let spec = options.into_spec()?;
        Self::outcome(self.scope.register_spec(self.pid(), &key, spec))
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
            .map(|(k, m)| {
                let spec = RegisterSpec::with_meta(m.clone());
                Ok((self.key(k, Permission::Register)?, spec))
            })
            .collect::<Result<Vec<_>, PgError>>()?;
        Self::outcome(self.scope.register_many(self.pid(), &entries))
    }

    /// [`register_many`](Self::register_many) with [`RegisterOptions`] for
    /// each key.
    pub fn register_many_with(
        &self,
        entries: &[(&str, RegisterOptions)],
    ) -> Result<RegisterOutcome, PgError> {
        self.live()?;
        let entries = entries
            .iter()
            .map(|(k, o)| Ok((self.key(k, Permission::Register)?, o.clone().into_spec()?)))
            .collect::<Result<Vec<_>, PgError>>()?;
        Self::outcome(self.scope.register_many(self.pid(), &entries))
    }

    /// Gives up `key` (`pg.unregister`); `Invalid` if this process does not
    /// hold it.
    pub fn unregister(&self, key: &str) -> Result<(), PgError> {
        self.live()?;
        // A registered key's name is the registry's own (a reference
        // count, where building one allocates: a process giving keys up
        // in a loop builds none); any other key is checked in full.
        let name = match self.scope.registered_name(key) {
            Some(name) => {
                self.check(Permission::Unregister, key)?;
                name
            }
            None => self.key(key, Permission::Unregister)?,
        };
        self.scope.unregister(self.pid(), &name).map_err(Into::into)
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

    /// The registration of `key`, whole: holder, metadata and tag
    /// (`pg.lookup`).
    pub fn registration(&self, key: &str) -> Result<Option<Registration>, PgError> {
        self.live()?;
        self.check_key(key, Permission::Lookup)?;
        Ok(self.scope.registration(key))
    }

    /// Every registration tagged `tag`, cluster wide, in key order
    /// (`pg.registrations` on the scope id; only keys the principal may
    /// `pg.lookup`). O(matches): the view keeps an index by tag.
    pub fn match_tag(&self, tag: &str) -> Result<Vec<Registration>, PgError> {
        self.live()?;
        if tag.is_empty() {
            return Err(PgError::invalid("empty tag"));
        }
        self.check(Permission::Registrations, self.id())?;
        Ok(self.visible(self.scope.match_tag(tag)))
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
            .filter(|r| self.allows(Permission::Lookup, r.key.as_str()))
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
