//! Every permission of docs/semantics.md's table, allowed and denied.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use pg_api::{
    Config, Effect, ErrorKind, Instance, Node, Permission, Rule, RulePolicy, ScopeOptions,
};

/// A node whose policy denies exactly `denied` to principal "guest" on
/// resources matching `resource`, and allows everything else.
fn node_denying(denied: Permission, resource: &str) -> Node {
    let policy = RulePolicy {
        rules: vec![Rule {
            effect: Effect::Deny,
            principal: "guest".into(),
            permission: denied.as_str().into(),
            resource: resource.into(),
        }],
        default: Effect::Allow,
    };
    Node::builder()
        .name("n")
        .scope("app:pg", ScopeOptions::default())
        .policy(policy)
        .start()
        .unwrap()
}

/// Runs the call guarded by `permission`; the group used is "g".
fn call(pg: &Instance, permission: Permission) -> Result<(), pg_api::PgError> {
    match permission {
        Permission::Open => unreachable!("checked separately"),
        Permission::Join => pg.join("g"),
        Permission::Leave => pg.leave("g"),
        Permission::GetMembers => pg.get_members("g").map(drop),
        Permission::GetLocalMembers => pg.get_local_members("g").map(drop),
        Permission::WhichGroups => pg.which_groups().map(drop),
        Permission::WhichLocalGroups => pg.which_local_groups().map(drop),
        Permission::Broadcast => pg.broadcast("g", "t", "x").map(drop),
        Permission::BroadcastLocal => pg.broadcast_local("g", "t", "x").map(drop),
        Permission::Monitor => pg.monitor("g").map(drop),
        Permission::Events => pg.events().map(drop),
        Permission::Count => pg.count("g").map(drop),
        Permission::LocalCount => pg.local_count("g").map(drop),
        Permission::GetMembersPrefix => pg.get_members_prefix("g/").map(drop),
        Permission::GetLocalMembersPrefix => pg.get_local_members_prefix("g/").map(drop),
        Permission::WhichGroupsPrefix => pg.which_groups_prefix("g/").map(drop),
        Permission::CountPrefix => pg.count_prefix("g/").map(drop),
        Permission::LocalCountPrefix => pg.local_count_prefix("g/").map(drop),
        Permission::MonitorPrefix => pg.monitor_prefix("g/").map(drop),
        Permission::LocalEntries => pg.local_entries().map(drop),
        Permission::Register => pg.register("g").map(drop),
        Permission::Unregister => pg.unregister("g"),
        Permission::Lookup => pg.lookup("g").map(drop),
        Permission::Registrations => pg.registered_count().map(drop),
        Permission::MonitorRegistry => pg
            .monitor_registry(pg_api::Pattern::Exact(pg_api::GroupName::new("g").unwrap()))
            .map(drop),
        Permission::Connect | Permission::Disconnect | Permission::Nodes => {
            unreachable!("process calls, checked separately")
        }
    }
}

/// The named-cluster calls of a process, on scope `id`.
fn cluster_call(
    p: &pg_api::Process,
    permission: Permission,
    id: &str,
) -> Result<(), pg_api::PgError> {
    match permission {
        Permission::Connect => p.connect(id),
        Permission::Disconnect => p.disconnect(id).map(drop),
        Permission::Nodes => p
            .nodes(id)
            .map(drop)
            .and_then(|()| p.is_connected(id).map(drop)),
        _ => unreachable!("instance calls"),
    }
}

#[tokio::test(start_paused = true)]
async fn cluster_permissions_are_checked_on_the_scope_id() {
    for permission in [
        Permission::Connect,
        Permission::Disconnect,
        Permission::Nodes,
    ] {
        let node = node_denying(permission, "app:other");
        let guest = node.spawn("guest");
        let admin = node.spawn("admin");
        admin.connect("app:other").unwrap();
        let err = cluster_call(&guest, permission, "app:other").unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::PermissionDenied,
            "{permission}: {err}"
        );
        assert!(
            node.is_connected("app:other"),
            "{permission}: a denied call changes nothing"
        );
        // Other scopes, and other principals, are allowed.
        cluster_call(&guest, permission, "app:pg").unwrap();
        cluster_call(&admin, permission, "app:other").unwrap();
    }
}

/// The resource each permission is checked on: the scope id for the
/// scope-wide ones, the prefix for the prefix ones, the group name for the
/// others.
fn resource(permission: Permission) -> &'static str {
    match permission {
        Permission::Open
        | Permission::WhichGroups
        | Permission::WhichLocalGroups
        | Permission::Events
        | Permission::LocalEntries
        | Permission::Registrations => "app:pg",
        Permission::GetMembersPrefix
        | Permission::GetLocalMembersPrefix
        | Permission::WhichGroupsPrefix
        | Permission::CountPrefix
        | Permission::LocalCountPrefix
        | Permission::MonitorPrefix => "g/",
        _ => "g",
    }
}

#[tokio::test(start_paused = true)]
async fn each_permission_is_checked_on_its_resource() {
    for permission in Permission::ALL {
        let node = node_denying(permission, resource(permission));
        let guest = node.spawn("guest");
        let admin = node.spawn("admin");
        if matches!(
            permission,
            Permission::Connect | Permission::Disconnect | Permission::Nodes
        ) {
            continue; // process calls: see the next test
        }
        if permission == Permission::Open {
            assert_eq!(
                guest.open("app:pg").unwrap_err().kind(),
                ErrorKind::PermissionDenied
            );
            assert!(admin.open("app:pg").is_ok());
            continue;
        }
        let gpg = guest.open("app:pg").unwrap();
        let apg = admin.open("app:pg").unwrap();
        // Membership for leave to have something to remove.
        if permission == Permission::Leave {
            let node_pg = guest.open("app:pg").unwrap();
            node_pg.join("g").unwrap();
        }
        let before = apg.which_groups().unwrap();
        let err = call(&gpg, permission).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::PermissionDenied,
            "{permission}: {err}"
        );
        assert_eq!(
            apg.which_groups().unwrap(),
            before,
            "{permission}: a denied call changes nothing"
        );
        // Other principals are allowed.
        if permission == Permission::Leave {
            apg.join("g").unwrap();
        }
        if permission == Permission::Unregister {
            apg.register("g").unwrap();
        }
        call(&apg, permission).unwrap_or_else(|e| panic!("{permission} for admin: {e}"));
        // The guest is allowed on resources the rule does not name.
        if resource(permission) == "g" {
            let other = match permission {
                Permission::Join => gpg.join("other"),
                Permission::GetMembers => gpg.get_members("other").map(drop),
                Permission::GetLocalMembers => gpg.get_local_members("other").map(drop),
                Permission::Broadcast => gpg.broadcast("other", "t", "x").map(drop),
                Permission::BroadcastLocal => gpg.broadcast_local("other", "t", "x").map(drop),
                Permission::Monitor => gpg.monitor("other").map(drop),
                Permission::Register => gpg.register("other").map(drop),
                Permission::Lookup => gpg.lookup("other").map(drop),
                _ => Ok(()),
            };
            other.unwrap_or_else(|e| panic!("{permission} on another resource: {e}"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn batch_join_is_all_or_nothing_under_permissions() {
    let node = node_denying(Permission::Join, "admin*");
    let guest = node.spawn("guest");
    let pg = guest.open("app:pg").unwrap();
    assert_eq!(
        pg.join(["users", "admins"]).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert!(pg.which_groups().unwrap().is_empty(), "nothing joined");
    pg.join(["users"]).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_policy_from_yaml() {
    let yaml = r#"
- name: pg
  kind: pg.scope
- name: policy
  kind: pg.policy
  default: deny
  rules:
    - { effect: allow, principal: "svc-*", permission: "pg.*" }
    - { effect: allow, principal: guest, permission: pg.open }
    - { effect: allow, principal: guest, permission: pg.get_members, resource: "public:*" }
"#;
    let node = Node::from_config(&Config::from_yaml(yaml).unwrap()).unwrap();
    let svc = node.spawn("svc-chat");
    let guest = node.spawn("guest");
    let stranger = node.spawn("stranger");
    let spg = svc.open("app:pg").unwrap();
    spg.join(["public:lobby", "private"]).unwrap();
    let gpg = guest.open("app:pg").unwrap();
    assert_eq!(gpg.get_members("public:lobby").unwrap().len(), 1);
    assert_eq!(
        gpg.get_members("private").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        gpg.join("public:lobby").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        stranger.open("app:pg").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
}

#[tokio::test(start_paused = true)]
async fn a_denied_broadcast_delivers_nothing() {
    let node = node_denying(Permission::Broadcast, "g");
    let mut member = node.spawn("member");
    member.open("app:pg").unwrap().join("g").unwrap();
    let guest = node.spawn("guest");
    let pg = guest.open("app:pg").unwrap();
    assert_eq!(
        pg.broadcast("g", "t", "x").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        pg.broadcast_typed("g", "t", &1u32).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert!(member.try_recv().is_none());
    let node = node_denying(Permission::BroadcastLocal, "g");
    let mut member = node.spawn("member");
    member.open("app:pg").unwrap().join("g").unwrap();
    let guest = node.spawn("guest");
    let pg = guest.open("app:pg").unwrap();
    assert_eq!(
        pg.broadcast_local_typed("g", "t", &1u32)
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    assert!(member.try_recv().is_none());
}

/// Registry listings and monitors answer only for keys the principal may
/// look up: a shorter prefix or the whole dump does not get round a rule.
#[tokio::test(start_paused = true)]
async fn registry_listings_filter_keys_by_lookup() {
    let node = node_denying(Permission::Lookup, "secret/*");
    let guest = node.spawn("guest");
    let admin = node.spawn("admin");
    let (gpg, apg) = (guest.open("app:pg").unwrap(), admin.open("app:pg").unwrap());
    apg.register("secret/1").unwrap();
    apg.register("public/1").unwrap();
    let keys = |list: Vec<pg_api::Registration>| -> Vec<String> {
        list.into_iter().map(|r| r.key.to_string()).collect()
    };
    assert_eq!(keys(gpg.dump().unwrap()), vec!["public/1"]);
    assert_eq!(keys(apg.dump().unwrap()).len(), 2);
    assert!(gpg.registrations_prefix("s").unwrap().is_empty());
    assert_eq!(keys(gpg.local_registrations().unwrap()), vec!["public/1"]);
    let (mut sub, snapshot) = gpg.monitor_registry(pg_api::Pattern::All).unwrap();
    assert_eq!(keys(snapshot), vec!["public/1"]);
    apg.register("secret/2").unwrap();
    apg.register("public/2").unwrap();
    let event = sub.recv().await.unwrap();
    assert_eq!(event.key.as_str(), "public/2");
}

/// A key the guest holds is still not given up without `pg.unregister`
/// (the held key's name is taken from the registry, and the permission
/// checked all the same); one it does not hold is refused the same way.
#[tokio::test(start_paused = true)]
async fn a_held_key_is_not_given_up_without_the_permission() {
    let node = node_denying(Permission::Unregister, "g");
    let guest = node.spawn("guest");
    let pg = guest.open("app:pg").unwrap();
    pg.register("g").unwrap();
    for key in ["g", "not-held"] {
        let err = pg.unregister(key).unwrap_err();
        let want = if key == "g" {
            ErrorKind::PermissionDenied
        } else {
            ErrorKind::Invalid
        };
        assert_eq!(err.kind(), want, "{key}: {err}");
    }
    assert_eq!(
        pg.lookup("g").unwrap().map(|(pid, _)| pid),
        Some(pg.pid().clone())
    );
}
