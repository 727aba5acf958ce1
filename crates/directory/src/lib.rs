//! The company directory (LDAP or Active Directory): a client that binds, authenticates
//! users and reads users and groups, and a pure sync plan that compares a directory
//! snapshot with Berth's accounts and team memberships.
