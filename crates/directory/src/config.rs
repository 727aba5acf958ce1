//! How Berth reaches and reads the company directory: server, TLS, service account, where
//! users and groups live, how membership is expressed, and which directory groups become
//! which Berth teams.
//!
//! The same struct is read from the TOML configuration today and will be persisted by the
//! metadata store (settings edited through the API), so it is `Serialize` as well as
//! `Deserialize`, and every field has a default: an empty `[directory]` section is a valid
//! OpenLDAP-shaped configuration that only needs a URL, bases and a service account.
//! [`DirectoryConfig::active_directory`] gives the Active Directory defaults.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A secret string (the service account's bind password). Its `Debug` output is redacted so
/// that configuration dumps and logs never show it; it serialises as the plain string
/// because the metadata store must be able to persist it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it to the directory.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// TLS towards the directory. `ldaps://` URLs always use TLS; `ldap://` uses it only when
/// `starttls` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Upgrade an `ldap://` connection with StartTLS before binding. Default `false`.
    pub starttls: bool,
    /// PEM file with the CA certificate(s) that sign the directory's certificate. Default:
    /// none, which means the operating system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. For tests against throwaway servers only: it lets
    /// anyone on the path read the bind passwords. Default `false`.
    pub insecure_skip_verify: bool,
}

/// How group membership is read from the directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MembershipMode {
    /// Groups list their members' DNs (`member` on `groupOfNames` or AD `group`). Default.
    #[default]
    GroupMember,
    /// Users list their groups' DNs (`memberOf`, maintained by AD or OpenLDAP's memberof
    /// overlay).
    UserMemberOf,
}

/// Which directory users get a Berth account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreateUsers {
    /// Only users in at least one mapped group (default): the directory may hold the whole
    /// company while only some of it uses the registry.
    #[default]
    MappedGroups,
    /// Every user the user filter matches.
    All,
}

/// A Berth team named `org/team`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TeamRef {
    org: String,
    team: String,
}

impl TeamRef {
    /// Parses `org/team`: two non-empty parts of ASCII letters, digits, `.`, `_` and `-`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Team(s.to_string());
        let (org, team) = s.split_once('/').ok_or_else(bad)?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if !ok(org) || !ok(team) {
            return Err(bad());
        }
        Ok(TeamRef {
            org: org.to_string(),
            team: team.to_string(),
        })
    }

    /// The organisation part.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The team part.
    pub fn team(&self) -> &str {
        &self.team
    }
}

impl fmt::Display for TeamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.team)
    }
}

berth_oci::string_form!(TeamRef, ConfigError, TeamRef::parse, TeamRef::to_string);

/// One directory group that grants membership of one Berth team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMapping {
    /// The group's DN (anything containing `=`, compared as a normalised DN) or its name
    /// (the configured group name attribute, compared case-insensitively; a name shared by
    /// groups in different OUs maps all of them).
    pub group: String,
    /// The Berth team its members join.
    pub team: TeamRef,
}

/// What the sync does with a snapshot (see [`crate::sync::plan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncPolicy {
    /// Which directory users get an account. Default: members of mapped groups.
    pub create_users: CreateUsers,
    /// Directory group to Berth team. Default: none (users are created, if `create_users =
    /// "all"`, but no team membership is managed).
    pub teams: Vec<GroupMapping>,
    /// Accept a snapshot with no users at all even though Berth has active directory
    /// accounts. Default `false`: such a snapshot usually means a wrong search base or a
    /// directory answering with nothing, and applying it would lock everyone out.
    pub allow_empty_directory: bool,
}

/// Everything needed to talk to one LDAP or Active Directory server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`. Default `ldap://127.0.0.1:389`.
    pub url: String,
    /// TLS options. Default: no StartTLS, the system trust store.
    pub tls: TlsConfig,
    /// DN of the service account used to search. Default empty: anonymous searches (most
    /// directories refuse them).
    pub bind_dn: String,
    /// Password of the service account. Never shown by `Debug`.
    pub bind_password: Secret,
    /// Where users are searched (subtree). Default empty (must be set).
    pub user_base: String,
    /// Which entries are users. Default `(objectClass=inetOrgPerson)`; AD:
    /// `(&(objectCategory=person)(objectClass=user))`.
    pub user_filter: String,
    /// Attribute holding the login name. Default `uid`; AD: `sAMAccountName`.
    pub username_attribute: String,
    /// Further attributes a login name may match, so that users can log in with, say,
    /// their `userPrincipalName` or `mail` as well as their username. The account is still
    /// named after the username attribute. Default: none.
    pub login_attributes: Vec<String>,
    /// Attribute holding the entry's immutable identifier, which binds a directory account
    /// to the entry it was made for: a name reused by another entry (another person) does
    /// not get the account. Default `entryUUID` (OpenLDAP, 389-DS); AD: `objectGUID`
    /// (binary, stored as lowercase hex). `None`: accounts are bound by name only.
    pub id_attribute: Option<String>,
    /// Attribute holding the e-mail address. Default `mail`; `None` to ignore.
    pub email_attribute: Option<String>,
    /// Attribute holding the display name. Default `cn`; AD: `displayName`; `None` to ignore.
    pub full_name_attribute: Option<String>,
    /// Where groups are searched (subtree). Default empty (must be set).
    pub group_base: String,
    /// Which entries are groups. Default `(objectClass=groupOfNames)`; AD:
    /// `(objectClass=group)`.
    pub group_filter: String,
    /// Attribute holding a group's name. Default `cn`.
    pub group_name_attribute: String,
    /// How membership is read. Default: the group's `member` attribute.
    pub membership: MembershipMode,
    /// Attribute of a group listing member DNs. Default `member`.
    pub member_attribute: String,
    /// Attribute of a user listing group DNs. Default `memberOf`.
    pub member_of_attribute: String,
    /// Follow nested groups: a member of a group that is itself a member of a mapped
    /// group is in the mapped group (at any depth; cycles are cut). Read by recursive
    /// expansion of `member` (group-member mode) or of the groups' own `memberOf`
    /// (user-member-of mode); one user's groups on Active Directory by the in-chain rule
    /// (see `nested_groups_in_chain`). Default `false`; `true` for Active Directory.
    pub nested_groups: bool,
    /// With nested groups, find one user's groups (at login) with Active Directory's
    /// in-chain matching rule (`member:1.2.840.113556.1.4.1941:=`) in one search when the
    /// server advertises AD (rootDSE `supportedCapabilities` holds
    /// 1.2.840.113556.1.4.800); other servers get the level-by-level expansion. `false`:
    /// always the expansion. Default `true`.
    pub nested_groups_in_chain: bool,
    /// Treat users whose `userAccountControl` has bit 2 (ACCOUNTDISABLE) as disabled.
    /// Default `false`; `true` for Active Directory.
    pub ad_disabled_flag: bool,
    /// Seconds to wait for a TCP connection (and TLS handshake). Default 5.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for each directory operation. Default 15.
    pub operation_timeout_secs: u64,
    /// Operations in a row that find the directory unreachable before the circuit breaker
    /// opens (then operations fail at once, and logins use the cached hash without
    /// waiting for a timeout). Default 3; 0 turns the breaker off.
    pub circuit_breaker_failures: u32,
    /// Seconds the breaker stays open before one operation is tried again. Default 30.
    pub circuit_breaker_secs: u64,
    /// Which users get accounts and which groups map to which teams.
    pub sync: SyncPolicy,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            url: "ldap://127.0.0.1:389".into(),
            tls: TlsConfig::default(),
            bind_dn: String::new(),
            bind_password: Secret::default(),
            user_base: String::new(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            username_attribute: "uid".into(),
            login_attributes: Vec::new(),
            id_attribute: Some("entryUUID".into()),
            email_attribute: Some("mail".into()),
            full_name_attribute: Some("cn".into()),
            group_base: String::new(),
            group_filter: "(objectClass=groupOfNames)".into(),
            group_name_attribute: "cn".into(),
            membership: MembershipMode::GroupMember,
            member_attribute: "member".into(),
            member_of_attribute: "memberOf".into(),
            nested_groups: false,
            nested_groups_in_chain: true,
            ad_disabled_flag: false,
            connect_timeout_secs: 5,
            operation_timeout_secs: 15,
            circuit_breaker_failures: 3,
            circuit_breaker_secs: 30,
            sync: SyncPolicy::default(),
        }
    }
}

impl DirectoryConfig {
    /// Active Directory defaults: `sAMAccountName` logins, person/user filter, `group`
    /// entries, `memberOf` membership, nested groups, `displayName`, and disabled-account
    /// detection.
    pub fn active_directory() -> Self {
        DirectoryConfig {
            user_filter: "(&(objectCategory=person)(objectClass=user))".into(),
            username_attribute: "sAMAccountName".into(),
            id_attribute: Some("objectGUID".into()),
            full_name_attribute: Some("displayName".into()),
            group_filter: "(objectClass=group)".into(),
            membership: MembershipMode::UserMemberOf,
            nested_groups: true,
            ad_disabled_flag: true,
            ..DirectoryConfig::default()
        }
    }

    /// The connect (and TLS handshake) timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The per-operation timeout.
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs)
    }

    /// How long the circuit breaker stays open.
    pub fn circuit_breaker_period(&self) -> Duration {
        Duration::from_secs(self.circuit_breaker_secs)
    }

    /// Whether connections use TLS (`ldaps://`, or StartTLS on `ldap://`).
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("ldaps://") || self.tls.starttls
    }

    /// Checks everything that can be checked without the network, so that a bad setting is
    /// refused when it is saved rather than at the first login.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rest = if let Some(r) = self.url.strip_prefix("ldaps://") {
            if self.tls.starttls {
                return Err(ConfigError::Invalid(
                    "starttls cannot be combined with an ldaps:// url".into(),
                ));
            }
            r
        } else if let Some(r) = self.url.strip_prefix("ldap://") {
            r
        } else {
            return Err(ConfigError::Invalid(format!(
                "url must start with ldap:// or ldaps://, got {:?}",
                self.url
            )));
        };
        if rest.split('/').next().unwrap_or_default().is_empty() {
            return Err(ConfigError::Invalid("url has no host".into()));
        }
        if self.tls.insecure_skip_verify && self.tls.ca_file.is_some() {
            return Err(ConfigError::Invalid(
                "tls.ca_file and tls.insecure_skip_verify are mutually exclusive".into(),
            ));
        }
        // A DN with an empty password is an unauthenticated bind (RFC 4513 5.1.2): the
        // server would accept it and the searches would run anonymously.
        if !self.bind_dn.is_empty() && self.bind_password.is_empty() {
            return Err(ConfigError::Invalid(
                "bind_dn is set but bind_password is empty".into(),
            ));
        }
        if self.bind_dn.is_empty() && !self.bind_password.is_empty() {
            return Err(ConfigError::Invalid(
                "bind_password is set but bind_dn is empty".into(),
            ));
        }
        for (name, base) in [
            ("user_base", &self.user_base),
            ("group_base", &self.group_base),
        ] {
            if base.trim().is_empty() {
                return Err(ConfigError::Invalid(format!("{name} must be set")));
            }
        }
        for (name, filter) in [
            ("user_filter", &self.user_filter),
            ("group_filter", &self.group_filter),
        ] {
            if !(filter.starts_with('(') && filter.ends_with(')'))
                || ldap3::parse_filter(filter).is_err()
            {
                return Err(ConfigError::Invalid(format!(
                    "{name} is not a parenthesised LDAP filter: {filter:?}"
                )));
            }
        }
        let mut attrs = vec![
            ("username_attribute", Some(&self.username_attribute)),
            ("email_attribute", self.email_attribute.as_ref()),
            ("id_attribute", self.id_attribute.as_ref()),
            ("full_name_attribute", self.full_name_attribute.as_ref()),
            ("group_name_attribute", Some(&self.group_name_attribute)),
        ];
        attrs.push(("member_attribute", Some(&self.member_attribute)));
        for a in &self.login_attributes {
            attrs.push(("login_attributes", Some(a)));
        }
        attrs.push(("member_of_attribute", Some(&self.member_of_attribute)));
        for (name, attr) in attrs {
            if let Some(a) = attr {
                if !valid_attribute(a) {
                    return Err(ConfigError::Invalid(format!(
                        "{name} is not an attribute name: {a:?}"
                    )));
                }
            }
        }
        if self.connect_timeout_secs == 0 || self.operation_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "timeouts must be at least 1 second".into(),
            ));
        }
        for m in &self.sync.teams {
            if m.group.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "empty group in the mapping to team {}",
                    m.team
                )));
            }
        }
        Ok(())
    }
}

/// An attribute description as RFC 4512 allows it (a name or a numeric OID), so that a
/// configured attribute can be placed in a filter without escaping.
fn valid_attribute(a: &str) -> bool {
    let mut bytes = a.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() => {
            a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        Some(b) if b.is_ascii_digit() => a.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
        _ => false,
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A team reference is not `org/team`.
    #[error("team must be org/team, got {0:?}")]
    Team(String),
    /// Any other invalid setting, with what is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// A complete configuration for unit tests (bind password "hunter2").
#[cfg(test)]
pub(crate) fn sample(url: &str) -> DirectoryConfig {
    DirectoryConfig {
        url: url.into(),
        bind_dn: "cn=admin,dc=example,dc=org".into(),
        bind_password: Secret::new("hunter2"),
        user_base: "ou=people,dc=example,dc=org".into(),
        group_base: "ou=groups,dc=example,dc=org".into(),
        ..DirectoryConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DirectoryConfig {
        sample("ldap://127.0.0.1:3389")
    }

    #[test]
    fn debug_never_shows_the_bind_password() {
        let shown = format!("{:?} {:#?}", valid(), valid());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn empty_section_takes_documented_defaults() {
        let c: DirectoryConfig = toml::from_str("").unwrap();
        assert_eq!(c, DirectoryConfig::default());
        assert_eq!(c.username_attribute, "uid");
        assert_eq!(c.membership, MembershipMode::GroupMember);
        assert_eq!(c.sync.create_users, CreateUsers::MappedGroups);
        assert_eq!(c.connect_timeout(), Duration::from_secs(5));
        assert!(!c.nested_groups && c.login_attributes.is_empty());
        assert_eq!(
            (c.circuit_breaker_failures, c.circuit_breaker_secs),
            (3, 30)
        );
        assert_eq!(c.id_attribute.as_deref(), Some("entryUUID"));
        let ad = DirectoryConfig::active_directory();
        assert!(ad.nested_groups && ad.ad_disabled_flag);
        assert_eq!(ad.id_attribute.as_deref(), Some("objectGUID"));
        let c: DirectoryConfig = toml::from_str(
            "nested_groups = true\nlogin_attributes = [\"userPrincipalName\", \"mail\"]\n\
             circuit_breaker_failures = 0\ncircuit_breaker_secs = 5\n",
        )
        .unwrap();
        assert_eq!(c.login_attributes, ["userPrincipalName", "mail"]);
        assert_eq!(c.circuit_breaker_period(), Duration::from_secs(5));
    }

    #[test]
    fn active_directory_config_from_toml() {
        let c: DirectoryConfig = toml::from_str(
            r#"
            url = "ldaps://dc1.corp.example.com"
            bind_dn = "CN=svc-berth,CN=Users,DC=corp,DC=example,DC=com"
            bind_password = "s3cret"
            user_base = "CN=Users,DC=corp,DC=example,DC=com"
            user_filter = "(&(objectCategory=person)(objectClass=user))"
            username_attribute = "sAMAccountName"
            group_base = "DC=corp,DC=example,DC=com"
            group_filter = "(objectClass=group)"
            membership = "user-member-of"
            ad_disabled_flag = true
            [tls]
            ca_file = "/etc/berth/corp-ca.pem"
            [sync]
            create_users = "all"
            [[sync.teams]]
            group = "CN=Registry Admins,CN=Users,DC=corp,DC=example,DC=com"
            team = "platform/admins"
            [[sync.teams]]
            group = "registry-developers"
            team = "platform/devs"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.uses_tls());
        assert_eq!(c.membership, MembershipMode::UserMemberOf);
        assert_eq!(
            c.sync.teams[1].team,
            TeamRef::parse("platform/devs").unwrap()
        );
        // Round trip: what the metadata store will persist reads back the same.
        let again: DirectoryConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn invalid_settings_are_refused() {
        type Edit = fn(&mut DirectoryConfig);
        let cases: &[(&str, Edit)] = &[
            ("http url", |c| c.url = "http://x".into()),
            ("no host", |c| c.url = "ldap://".into()),
            ("starttls on ldaps", |c| {
                c.url = "ldaps://x".into();
                c.tls.starttls = true
            }),
            ("ca and skip", |c| {
                c.tls.ca_file = Some("/x".into());
                c.tls.insecure_skip_verify = true
            }),
            ("dn without password", |c| {
                c.bind_password = Secret::default()
            }),
            ("password without dn", |c| c.bind_dn.clear()),
            ("no user base", |c| c.user_base.clear()),
            ("no group base", |c| c.group_base = " ".into()),
            ("unparenthesised filter", |c| {
                c.user_filter = "objectClass=person".into()
            }),
            ("broken filter", |c| c.group_filter = "(&(cn=x)".into()),
            ("attribute injection", |c| {
                c.username_attribute = "uid=*)(cn".into()
            }),
            ("zero timeout", |c| c.operation_timeout_secs = 0),
            ("login attribute injection", |c| {
                c.login_attributes = vec!["mail=*)(uid".into()]
            }),
            ("empty mapped group", |c| {
                c.sync.teams.push(GroupMapping {
                    group: "".into(),
                    team: TeamRef::parse("a/b").unwrap(),
                })
            }),
        ];
        valid().validate().unwrap();
        for (name, edit) in cases {
            let mut c = valid();
            edit(&mut c);
            assert!(c.validate().is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn team_refs() {
        for ok in ["acme/devs", "a.b/c_d-1"] {
            assert_eq!(TeamRef::parse(ok).unwrap().to_string(), ok);
        }
        for bad in ["", "acme", "/devs", "acme/", "a/b/c", "a b/c", "acme/dévs"] {
            assert!(TeamRef::parse(bad).is_err(), "{bad:?}");
        }
        assert!(toml::from_str::<GroupMapping>("group = \"g\"\nteam = \"nope\"").is_err());
    }
}
