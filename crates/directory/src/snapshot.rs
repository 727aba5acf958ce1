//! What the directory holds, as read at one moment: users, groups and who is in which
//! group. The client produces it, the sync plan consumes it, and a sync run can keep it as
//! the evidence of what it saw. Plain data: no IO.

use crate::config::GroupMapping;
pub use crate::dn::normalize_dn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A user entry of the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// The entry's distinguished name, as the server returned it.
    pub dn: String,
    /// The account name: the configured username attribute mapped by
    /// [`crate::names::account_name_for`] (lowercased, and made to fit Berth's name rule).
    pub username: String,
    /// The entry's immutable identifier (the configured `id_attribute`: `entryUUID` as the
    /// server gives it, AD's binary `objectGUID` as lowercase hex), when present. Binds the
    /// account to this entry: another entry with the same name is another person.
    #[serde(default)]
    pub id: Option<String>,
    /// E-mail address, when the configured attribute is present.
    pub email: Option<String>,
    /// Display name, when the configured attribute is present.
    pub full_name: Option<String>,
    /// Disabled in the directory (AD `userAccountControl` bit 2, when enabled).
    pub disabled: bool,
}

/// A group entry of the directory with its members resolved to usernames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryGroup {
    /// The entry's distinguished name.
    pub dn: String,
    /// The configured group name attribute (falls back to the DN when absent).
    pub name: String,
    /// Usernames (lowercased) of the members that are users of the snapshot. Members that
    /// are not (nested groups, entries outside the user base or filter) are left out.
    pub members: BTreeSet<String>,
}

/// All users and groups, read in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    /// Users, sorted by username.
    pub users: Vec<DirectoryUser>,
    /// Groups, sorted by DN.
    pub groups: Vec<DirectoryGroup>,
    /// Entries left out while reading (a username that maps to no account name, two users
    /// with one account name), for the sync report.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl DirectorySnapshot {
    /// The user with this username (mapped to an account name first, so a directory
    /// spelling finds its user too).
    pub fn user(&self, username: &str) -> Option<&DirectoryUser> {
        let username = crate::names::account_name_for(username)?;
        self.users.iter().find(|u| u.username == username)
    }

    /// The group with this DN (compared as normalised DNs) or name (case-insensitively).
    pub fn group(&self, dn_or_name: &str) -> Option<&DirectoryGroup> {
        self.groups.iter().find(|g| group_matches(dn_or_name, g))
    }
}

impl GroupMapping {
    /// Whether this mapping names `group`, by DN or by name.
    pub fn matches(&self, group: &DirectoryGroup) -> bool {
        group_matches(&self.group, group)
    }
}

fn group_matches(dn_or_name: &str, group: &DirectoryGroup) -> bool {
    if dn_or_name.contains('=') {
        normalize_dn(dn_or_name) == normalize_dn(&group.dn)
    } else {
        dn_or_name.trim().to_lowercase() == group.name.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TeamRef;

    #[test]
    fn dn_normalisation() {
        let cases = [
            (
                "CN=Registry Admins, CN=Users,DC=corp",
                "cn=registry admins,cn=users,dc=corp",
            ),
            ("uid=alice,ou=people", "uid=alice,ou=people"),
            ("cn = a\\, b , dc=x", "cn=a\\2c b,dc=x"),
        ];
        for (dn, want) in cases {
            assert_eq!(normalize_dn(dn), want, "{dn}");
        }
    }

    #[test]
    fn mappings_match_by_dn_or_name() {
        let g = DirectoryGroup {
            dn: "CN=Registry Developers,CN=Users,DC=corp,DC=example,DC=com".into(),
            name: "registry-developers".into(),
            members: BTreeSet::new(),
        };
        let team = TeamRef::parse("p/devs").unwrap();
        let m = |group: &str| GroupMapping {
            group: group.into(),
            team: team.clone(),
        };
        assert!(m("cn=registry developers,cn=users,dc=corp,dc=example,dc=com").matches(&g));
        assert!(m("Registry-Developers").matches(&g));
        assert!(!m("registry").matches(&g));
        assert!(!m("cn=registry-developers,dc=corp,dc=example,dc=com").matches(&g));
    }
}
