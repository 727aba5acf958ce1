//! The access decision: may this subject do this to this repository? A pure function.
//!
//! The model is Docker Trusted Registry's. Repositories live in a namespace (the first
//! component of their name), which is a user's or an organisation's. Rights are additive:
//!
//! - a system administrator may do everything;
//! - a user is admin of every repository in their own namespace;
//! - an organisation owner is admin of every repository in the organisation's namespace;
//! - a team of an organisation holds a [`Role`] on one repository of that organisation, or
//!   on the whole organisation namespace ([`Grant`]); grants naming another namespace than
//!   the team's organisation are ignored;
//! - anyone, anonymous included, may pull a public repository;
//! - a repository that does not exist yet may be created by a push from whoever has write
//!   on the namespace: its user, the organisation's owners and namespace `read-write` or
//!   `admin` teams, and every member when the organisation sets `members_can_create`.
//!
//! An inactive user (deactivated by directory sync) is treated as anonymous. An access
//! token may carry a [`Restriction`]: its rights are the user's rights intersected with
//! the restriction's (and never less than an anonymous caller's). A registry bearer token
//! carries, besides its originating credential's restriction, exactly the actions its
//! `access` claim lists ([`TokenAccess`]): its rights are intersected with those too, so no
//! path that reloads the user can give a bearer token more than it says.
//!
//! The answer is a [`Decision`] and says what the caller may learn: a caller who cannot pull
//! a private repository is told it does not exist ([`Decision::Invisible`], 404
//! `NAME_UNKNOWN`), exactly as for a repository that does not exist, so names do not leak;
//! a caller who can see it but lacks the action is [`Decision::Denied`] (403 `DENIED`); an
//! anonymous caller is asked to log in ([`Decision::NeedsAuthentication`], 401) whether or
//! not the repository exists. The one unavoidable exception: whoever may create
//! repositories in a namespace learns, by pushing, whether a name is already taken.
//!
//! Types here are plain data (serde) so that the metadata store can keep accounts, grants
//! and restrictions as they are; the caller loads the grants of the subject's teams.

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};

use crate::scope::Action;

/// A role on a repository or a namespace. Ordered: each role includes the previous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Pull.
    ReadOnly,
    /// Pull, push and tag.
    ReadWrite,
    /// Also delete, and manage the repository's access and settings.
    Admin,
}

impl Role {
    /// The wire and storage form (`read-only`, `read-write`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
            Role::Admin => "admin",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read-only" => Some(Role::ReadOnly),
            "read-write" => Some(Role::ReadWrite),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    fn permissions(self) -> Perms {
        match self {
            Role::ReadOnly => Perms::PULL,
            Role::ReadWrite => Perms::PULL.with(Perms::PUSH),
            Role::Admin => Perms::ALL,
        }
    }
}

/// What a request needs on a repository. `http` maps each endpoint to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Write blobs and manifests, move tags; on a missing repository, create it.
    Push,
    /// Delete manifests, tags, blobs, the repository.
    Delete,
    /// Manage the repository's access and settings (visibility, team grants).
    Admin,
}

impl Permission {
    /// Every permission, weakest first.
    pub const ALL: [Permission; 4] = [
        Permission::Pull,
        Permission::Push,
        Permission::Delete,
        Permission::Admin,
    ];

    /// The wire form (`pull`, `push`, `delete`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Pull => "pull",
            Permission::Push => "push",
            Permission::Delete => "delete",
            Permission::Admin => "admin",
        }
    }

    /// The permission a token scope action needs on a repository: `*` needs admin; an
    /// unknown action maps to nothing and is never granted.
    pub fn for_action(a: &Action) -> Option<Permission> {
        match a {
            Action::Pull => Some(Permission::Pull),
            Action::Push => Some(Permission::Push),
            Action::Delete => Some(Permission::Delete),
            Action::All => Some(Permission::Admin),
            Action::Other(_) => None,
        }
    }

    fn bit(self) -> Perms {
        match self {
            Permission::Pull => Perms::PULL,
            Permission::Push => Perms::PUSH,
            Permission::Delete => Perms::DELETE,
            Permission::Admin => Perms::ADMIN,
        }
    }
}

/// A small set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Perms(u8);

impl Perms {
    const NONE: Perms = Perms(0);
    const PULL: Perms = Perms(1);
    const PUSH: Perms = Perms(2);
    const DELETE: Perms = Perms(4);
    const ADMIN: Perms = Perms(8);
    const ALL: Perms = Perms(15);

    const fn with(self, o: Perms) -> Perms {
        Perms(self.0 | o.0)
    }
    fn and(self, o: Perms) -> Perms {
        Perms(self.0 & o.0)
    }
    fn has(self, p: Permission) -> bool {
        self.0 & p.bit().0 != 0
    }
}

/// Membership of a user in an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrgMembership {
    /// The organisation's name (its namespace).
    pub org: String,
    /// Owners administer every repository of the organisation.
    pub is_owner: bool,
}

/// A team, named by its organisation and its name within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TeamRef {
    /// The organisation the team belongs to.
    pub org: String,
    /// The team's name.
    pub team: String,
}

/// An authenticated account as the access decision needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable account id (the store's key).
    pub id: String,
    /// Account name, which is also the user's namespace.
    pub name: String,
    /// System administrators may do everything.
    pub is_system_admin: bool,
    /// False once deactivated (for instance by directory sync): treated as anonymous.
    pub active: bool,
    /// Organisations the user belongs to.
    #[serde(default)]
    pub orgs: Vec<OrgMembership>,
    /// Teams the user belongs to.
    #[serde(default)]
    pub teams: Vec<TeamRef>,
}

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum GrantTarget {
    /// One repository, by full name; it must be in the team's organisation namespace.
    Repository(String),
    /// Every repository of the team's organisation namespace.
    Namespace,
}

/// A team's role on a repository or on its organisation's whole namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The team holding the role.
    pub team: TeamRef,
    /// What the role applies to.
    pub target: GrantTarget,
    /// The role.
    pub role: Role,
}

/// What an access-token restriction entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "pattern")]
pub enum RestrictionTarget {
    /// Repositories whose full name matches this pattern; `*` matches any run of
    /// characters, `/` included (`team/app`, `team/app-*`, `*`).
    Repository(String),
    /// Every repository of this namespace.
    Namespace(String),
}

impl RestrictionTarget {
    fn matches(&self, repo: &RepoName) -> bool {
        match self {
            RestrictionTarget::Repository(p) => glob(p.as_bytes(), repo.as_str().as_bytes()),
            RestrictionTarget::Namespace(ns) => repo.namespace() == ns,
        }
    }
}

/// One entry of an access token's restriction: at most `max_role` on the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RestrictionEntry {
    /// The repositories covered.
    pub target: RestrictionTarget,
    /// The most the token may do there.
    pub max_role: Role,
}

/// The reduced scope of an access token: the union of its entries bounds what the token
/// can do; a repository no entry matches gets nothing beyond anonymous rights.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Restriction {
    /// The entries.
    pub entries: Vec<RestrictionEntry>,
}

impl Restriction {
    fn bound(&self, repo: &RepoName) -> Perms {
        self.entries
            .iter()
            .filter(|e| e.target.matches(repo))
            .fold(Perms::NONE, |acc, e| acc.with(e.max_role.permissions()))
    }
}

/// What a registry bearer token's `access` claim grants: exactly the listed actions on
/// exactly the listed repositories (`*` is every permission). Names match literally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenAccess {
    entries: Vec<(String, Perms)>,
}

impl TokenAccess {
    /// Adds the actions `actions` (wire names; unknown ones grant nothing) on `repository`.
    pub fn grant<'a>(&mut self, repository: &str, actions: impl IntoIterator<Item = &'a str>) {
        let p = actions
            .into_iter()
            .filter_map(|a| Permission::for_action(&Action::parse(a).ok()?))
            .fold(Perms::NONE, |acc, p| {
                acc.with(if p == Permission::Admin {
                    Perms::ALL
                } else {
                    p.bit()
                })
            });
        self.entries.push((repository.to_string(), p));
    }

    fn bound(&self, repo: &RepoName) -> Perms {
        self.entries
            .iter()
            .filter(|(n, _)| n == repo.as_str())
            .fold(Perms::NONE, |acc, (_, p)| acc.with(*p))
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subject {
    /// The authenticated user, or `None` for an anonymous caller.
    pub user: Option<User>,
    /// Set when the caller authenticated with a restricted access token (or with a bearer
    /// or refresh token minted from one).
    pub restriction: Option<Restriction>,
    /// Set for a registry bearer token: what its `access` claim lists. Never stored.
    #[serde(skip)]
    pub token: Option<TokenAccess>,
}

impl Subject {
    /// An anonymous caller.
    pub fn anonymous() -> Subject {
        Subject::default()
    }

    /// A user with their full rights.
    pub fn user(user: User) -> Subject {
        Subject {
            user: Some(user),
            restriction: None,
            token: None,
        }
    }

    /// Whether the caller holds less than its user's full rights (a restricted access
    /// token, or a registry bearer token): such a caller never acts as an owner or a
    /// system administrator.
    pub fn is_restricted(&self) -> bool {
        self.restriction.is_some() || self.token.is_some()
    }

    /// An active system administrator with the user's full rights.
    pub fn is_system_admin(&self) -> bool {
        !self.is_restricted() && self.active_user().is_some_and(|u| u.is_system_admin)
    }

    /// The user if authenticated and active; an inactive user counts as anonymous.
    pub fn active_user(&self) -> Option<&User> {
        self.user.as_ref().filter(|u| u.active)
    }
}

/// Whether a repository can be pulled anonymously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    /// Anyone may pull.
    Public,
    /// Only those with a role may pull; invisible to everyone else.
    Private,
}

/// What kind of account owns a namespace, as far as the decision needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NamespaceKind {
    /// A user's namespace.
    User,
    /// An organisation's namespace.
    Organization {
        /// Whether every member may create repositories by pushing.
        members_can_create: bool,
    },
    /// No user or organisation has this name: only system administrators create here.
    Unknown,
}

/// The repository a request is about, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Its full name.
    pub name: RepoName,
    /// `Some` if it exists, with its visibility; `None` if it does not exist (yet).
    pub visibility: Option<Visibility>,
    /// The owner of its namespace.
    pub namespace: NamespaceKind,
}

/// The outcome of an access check, and what the caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// The caller may see the repository but not do this: 403 `DENIED`.
    Denied,
    /// The caller may not know the repository exists: 404 `NAME_UNKNOWN`.
    Invisible,
    /// An anonymous (or deactivated) caller must authenticate: 401 with a challenge.
    NeedsAuthentication,
}

/// The permissions `subject` holds on `repo`, before turning them into a decision.
fn rights(subject: &Subject, repo: &Repository, grants: &[Grant]) -> Perms {
    let anonymous = match repo.visibility {
        Some(Visibility::Public) => Perms::PULL,
        _ => Perms::NONE,
    };
    let Some(user) = subject.active_user() else {
        return anonymous;
    };
    let mut p = user_rights(user, repo, grants);
    if let Some(r) = &subject.restriction {
        p = p.and(r.bound(&repo.name));
    }
    if let Some(t) = &subject.token {
        p = p.and(t.bound(&repo.name));
    }
    p.with(anonymous)
}

fn user_rights(user: &User, repo: &Repository, grants: &[Grant]) -> Perms {
    if user.is_system_admin {
        return Perms::ALL;
    }
    let ns = repo.name.namespace();
    let mut p = Perms::NONE;
    match repo.namespace {
        NamespaceKind::User => {
            if user.name == ns {
                p = Perms::ALL;
            }
        }
        NamespaceKind::Organization { members_can_create } => {
            let membership = user.orgs.iter().find(|m| m.org == ns);
            if membership.is_some_and(|m| m.is_owner) {
                p = Perms::ALL;
            }
            for g in grants {
                let applies = g.team.org == ns
                    && user.teams.contains(&g.team)
                    && match &g.target {
                        GrantTarget::Namespace => true,
                        GrantTarget::Repository(name) => name == repo.name.as_str(),
                    };
                if applies {
                    p = p.with(g.role.permissions());
                }
            }
            if repo.visibility.is_none() && members_can_create && membership.is_some() {
                p = p.with(Perms::PUSH);
            }
        }
        NamespaceKind::Unknown => {}
    }
    p
}

/// Decides whether `subject` may use `permission` on `repo`. `grants` are the grants of
/// the subject's teams (others are ignored, so passing more is harmless).
pub fn decide(
    subject: &Subject,
    repo: &Repository,
    grants: &[Grant],
    permission: Permission,
) -> Decision {
    let p = rights(subject, repo, grants);
    if p.has(permission) {
        Decision::Allowed
    } else if subject.active_user().is_none() {
        Decision::NeedsAuthentication
    } else if p.has(Permission::Pull) {
        Decision::Denied
    } else {
        Decision::Invisible
    }
}

/// The actions of a token request for `repo` that the subject's roles grant, whatever else
/// was asked: the token endpoint puts exactly these in the `access` claim.
pub fn granted_actions(
    subject: &Subject,
    repo: &Repository,
    grants: &[Grant],
    requested: &[Action],
) -> Vec<Action> {
    let p = rights(subject, repo, grants);
    requested
        .iter()
        .filter(|a| Permission::for_action(a).is_some_and(|perm| p.has(perm)))
        .cloned()
        .collect()
}

/// Whether `registry:catalog:*` is granted. Every caller may list; the listing itself is
/// filtered with [`catalog_filter`], so it shows only what the caller may pull.
pub fn catalog_allowed(_subject: &Subject) -> bool {
    true
}

/// Keeps the repositories the subject may pull, in order: what `_catalog` and every other
/// listing may show.
pub fn catalog_filter<'a>(
    subject: &Subject,
    grants: &[Grant],
    repos: impl IntoIterator<Item = &'a Repository>,
) -> Vec<&'a Repository> {
    repos
        .into_iter()
        .filter(|r| r.visibility.is_some() && rights(subject, r, grants).has(Permission::Pull))
        .collect()
}

/// `*` matches any run of bytes; everything else matches itself. Greedy matching that
/// only ever backtracks to the last `*`: at most pattern x text steps, never exponential.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        for (p, t, want) in [
            ("team/app", "team/app", true),
            ("team/app", "team/app2", false),
            ("team/app-*", "team/app-api", true),
            ("team/app-*", "team/app", false),
            ("*", "a/b/c", true),
            ("team/*", "team/a/b", true),
            ("*/app", "x/y/app", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "", true),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} {t}");
        }
    }

    #[test]
    fn roles_serialise_as_dtr_names() {
        assert_eq!(
            serde_json::to_string(&Role::ReadOnly).unwrap(),
            "\"read-only\""
        );
        for r in [Role::ReadOnly, Role::ReadWrite, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        let g = Grant {
            team: TeamRef {
                org: "acme".into(),
                team: "devs".into(),
            },
            target: GrantTarget::Repository("acme/app".into()),
            role: Role::ReadWrite,
        };
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), g);
    }

    #[test]
    fn granted_actions_drop_what_roles_do_not_give() {
        let user = User {
            id: "1".into(),
            name: "rita".into(),
            is_system_admin: false,
            active: true,
            orgs: vec![OrgMembership {
                org: "acme".into(),
                is_owner: false,
            }],
            teams: vec![TeamRef {
                org: "acme".into(),
                team: "readers".into(),
            }],
        };
        let grants = [Grant {
            team: user.teams[0].clone(),
            target: GrantTarget::Namespace,
            role: Role::ReadOnly,
        }];
        let repo = Repository {
            name: RepoName::parse("acme/app").unwrap(),
            visibility: Some(Visibility::Private),
            namespace: NamespaceKind::Organization {
                members_can_create: false,
            },
        };
        let asked = [
            Action::Pull,
            Action::Push,
            Action::Delete,
            Action::All,
            Action::Other("mount".into()),
        ];
        let s = Subject::user(user);
        assert_eq!(
            granted_actions(&s, &repo, &grants, &asked),
            vec![Action::Pull]
        );
        assert!(granted_actions(&Subject::anonymous(), &repo, &grants, &asked).is_empty());
    }
}
