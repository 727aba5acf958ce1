//! [`IdentityStore`] on SQLite. Writes go through the store's writer thread (group
//! commit, see [`crate::sqlite`]); the reads every authenticated request makes (the access
//! decision's inputs, a user, a token) run on the calling thread's read-only connection;
//! listings and the audit log use the sqlx pool.

use crate::convert::now_ms;
use crate::identity::*;
use crate::shared::USER_DELETE;
use crate::shared::{self, grants_sql, team_record, GrantsOf, Statements, ORG_ID, TEAM_ID};
use crate::shared::{AUDIT_PRUNE, GRANT_NAMESPACE_REMOVE, GRANT_REPO_REMOVE, ORG_DELETE};
use crate::shared::{
    REPO_DELETE, REPO_SET_VISIBILITY, SIGNING_KEY_RESEAL, SIGNING_KEY_RETIRE, TEAM_DELETE,
};
use crate::shared::{TEAM_MEMBER_REMOVE, TEAM_SET_GROUP, TOKENS_REVOKE_ALL, TOKEN_TOUCH};
use crate::sqlite::{repo_id, sql};
use crate::{MetaError, SqliteMetaStore};
use async_trait::async_trait;
use berth_auth::rbac::{Grant, Repository, Role, Subject, Visibility};
use berth_auth::secret::SecretId;
use berth_oci::RepoName;
use rusqlite::{Connection, OptionalExtension, Row};

/// Maps constraint failures to the errors callers act on.
fn write_err(e: rusqlite::Error, what: &str) -> MetaError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return MetaError::Conflict(what.to_string())
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                return MetaError::NotFound(format!("what {what} refers to"))
            }
            _ => {}
        }
    }
    sql(e)
}

/// A row as the tuple type the shared mapping takes (`UserRow`, `OrgRow`, `TokenRow`):
/// columns in order.
fn tuple_row<T>(r: &Row<'_>) -> rusqlite::Result<T>
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    T::try_from(r)
}

fn key_parts(key: UserKey<'_>) -> (Option<i64>, Option<&str>) {
    match key {
        UserKey::Id(id) => (Some(id), None),
        UserKey::Name(n) => (None, Some(n)),
    }
}

/// The id of organisation `org`.
fn org_id(conn: &Connection, org: &str) -> Result<i64, MetaError> {
    conn.prepare_cached(ORG_ID)
        .and_then(|mut st| st.query_row([org], |r| r.get(0)).optional())
        .map_err(sql)?
        .ok_or_else(|| MetaError::NotFound(format!("organisation {org}")))
}

/// The id of team `team` of `org`.
fn team_id(conn: &Connection, org: &str, team: &str) -> Result<i64, MetaError> {
    conn.prepare_cached(TEAM_ID)
        .and_then(|mut st| st.query_row([org, team], |r| r.get(0)).optional())
        .map_err(sql)?
        .ok_or_else(|| MetaError::NotFound(format!("team {org}/{team}")))
}

fn check_user(conn: &Connection, user: AccountId) -> Result<(), MetaError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1 AND kind = 'user'")
        .and_then(|mut st| st.exists([user]))
        .map_err(sql)?;
    if found {
        Ok(())
    } else {
        Err(MetaError::NotFound(format!("user {user}")))
    }
}

/// Revokes the refresh tokens of `user` issued at a password login under another epoch.
fn revoke_stale_sessions(conn: &Connection, user: AccountId, epoch: i64) -> Result<(), MetaError> {
    conn.prepare_cached(
        "UPDATE tokens SET revoked = 1 WHERE user_id = ?1 AND kind = 'refresh' \
         AND credential_epoch IS NOT NULL AND credential_epoch <> ?2 AND revoked = 0",
    )
    .and_then(|mut st| st.execute((user, epoch)))
    .map_err(sql)?;
    Ok(())
}

fn user_by_id(conn: &Connection, id: AccountId) -> Result<UserRecord, MetaError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM accounts WHERE id = ?1 AND kind = 'user'"
        ))
        .and_then(|mut st| st.query_row([id], tuple_row::<UserRow>).optional())
        .map_err(sql)?
        .ok_or_else(|| MetaError::NotFound(format!("user {id}")))?;
    user_record(row)
}

fn org_by_name(conn: &Connection, name: &str) -> Result<Option<OrgRecord>, MetaError> {
    conn.prepare_cached(&format!(
        "SELECT {ORG_COLUMNS} FROM accounts WHERE name = ?1 AND kind = 'org'"
    ))
    .and_then(|mut st| st.query_row([name], tuple_row::<OrgRow>).optional())
    .map_err(sql)?
    .map(org_record)
    .transpose()
}

impl SqliteMetaStore {
    /// Runs `op` in the writer's next transaction with the id of team `team` of `org`
    /// (`NotFound`, running nothing, if there is no such team).
    async fn with_team<T, F>(&self, org: &str, team: &str, op: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, MetaError> + Send + 'static,
    {
        let (org, team) = (org.to_string(), team.to_string());
        self.write(move |conn| op(conn, team_id(conn, &org, &team)?))
            .await
    }
}

/// Whether repositories that no account owns are in namespace `ns`.
fn namespace_held(conn: &Connection, ns: &str) -> Result<bool, MetaError> {
    let (slash, after) = namespace_bounds(ns);
    conn.prepare_cached(
        // `+owner_id`: search the namespace's name range, not every ownerless repository.
        "SELECT 1 FROM repositories WHERE (name = ?1 OR (name >= ?2 AND name < ?3)) \
         AND +owner_id IS NULL LIMIT 1",
    )
    .and_then(|mut st| st.exists((ns, &slash, &after)))
    .map_err(sql)
}

/// Gives the repositories of namespace `ns` that no account owns to account `owner`.
fn namespace_claim(conn: &Connection, ns: &str, owner: AccountId) -> Result<(), MetaError> {
    let (slash, after) = namespace_bounds(ns);
    conn.prepare_cached(
        "UPDATE repositories SET owner_id = ?4 WHERE (name = ?1 OR (name >= ?2 AND name < ?3)) \
         AND +owner_id IS NULL",
    )
    .and_then(|mut st| st.execute((ns, &slash, &after, owner)))
    .map_err(sql)?;
    Ok(())
}

/// The subject's columns: id, name, admin, active, orgs JSON, teams JSON; alias `u`.
const SUBJECT_COLUMNS: &str = "u.id, u.name, u.system_admin, u.active, \
    (SELECT json_group_array(json_object('org', o.name, 'is_owner', \
        json(CASE WHEN m.is_owner THEN 'true' ELSE 'false' END))) \
     FROM org_members m JOIN accounts o ON o.id = m.org_id WHERE m.user_id = u.id), \
    (SELECT json_group_array(json_object('org', o.name, 'team', t.name)) \
     FROM team_members tm JOIN teams t ON t.id = tm.team_id \
     JOIN accounts o ON o.id = t.org_id WHERE tm.user_id = u.id)";

type SubjectRow = (i64, String, bool, bool, String, String);

fn subject_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<SubjectRow>> {
    let id: Option<i64> = r.get(at)?;
    let Some(id) = id else { return Ok(None) };
    Ok(Some((
        id,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
    )))
}

fn subject_from(row: SubjectRow) -> Result<Subject, MetaError> {
    let (id, name, admin, active, orgs, teams) = row;
    subject(id, name, admin, active, &orgs, &teams)
}

/// Everything of `access_for` in one statement: the subject's columns (NULL for nobody),
/// the repository's visibility, the namespace account's kind and setting (an existing
/// repository's owner by id, NULL if it has none; for a missing repository the account
/// of the namespace's name, which would own it), and the user's
/// grants that apply to the repository as a JSON array of 4-tuples.
/// Built once: it runs on every authenticated request.
static ACCESS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(access_sql);

fn access_sql() -> String {
    let grants = grants_sql(
        "r.name = ?3 AND o.name = ?4 AND t.id IN (SELECT team_id FROM team_members WHERE user_id = u.id)",
        "o.name = ?4 AND t.id IN (SELECT team_id FROM team_members WHERE user_id = u.id)",
    );
    format!(
        "SELECT {SUBJECT_COLUMNS}, \
         rp.visibility, ns.kind, ns.members_can_create, \
         (SELECT json_group_array(json_array(gorg, gteam, grepo, grole)) FROM ({grants})) \
         FROM (SELECT 1) one \
         LEFT JOIN accounts u ON u.kind = 'user' AND (u.id = ?1 OR u.name = ?2) \
         LEFT JOIN repositories rp ON rp.name = ?3 \
         LEFT JOIN accounts ns ON ns.id = CASE WHEN rp.id IS NULL \
             THEN (SELECT id FROM accounts WHERE name = ?4) ELSE rp.owner_id END"
    )
}

#[async_trait]
impl AccountStore for SqliteMetaStore {
    async fn user_create(&self, user: &NewUser) -> Result<UserRecord, MetaError> {
        check_name("user", &user.name)?;
        let u = user.clone();
        self.write(move |conn| {
            check_namespace_free(&u.name, namespace_held(conn, &u.name)?, u.claim_namespace)?;
            let now = now_ms();
            let (origin, dn, did) = origin_parts(&u.origin);
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO accounts (name, kind, full_name, email, password, origin, \
                     directory_dn, active, system_admin, service_account, created_at, updated_at, \
                     directory_id) \
                     VALUES (?1, 'user', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11) RETURNING id",
                )
                .and_then(|mut st| {
                    st.query_row(
                        rusqlite::params![
                            u.name,
                            u.full_name,
                            u.email,
                            u.password,
                            origin,
                            dn,
                            u.active,
                            u.is_system_admin,
                            u.is_service_account,
                            now,
                            did
                        ],
                        |r| r.get(0),
                    )
                })
                .map_err(|e| write_err(e, &format!("account {}", u.name)))?;
            if u.claim_namespace {
                namespace_claim(conn, &u.name, id)?;
            }
            user_by_id(conn, id)
        })
        .await
    }

    async fn user_get(&self, key: UserKey<'_>) -> Result<Option<UserRecord>, MetaError> {
        let (id, name) = key_parts(key);
        let row = self.fast.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM accounts WHERE kind = 'user' AND (id = ?1 OR name = ?2)"
            ))?
            .query_row((id, name), tuple_row::<UserRow>)
            .optional()
        })?;
        row.map(user_record).transpose()
    }

    async fn users_list(&self, last: Option<&str>, n: u32) -> Result<Vec<UserRecord>, MetaError> {
        shared::accounts_page(self.sqlx(), (USER_COLUMNS, "user"), last, n, user_record).await
    }

    async fn user_update(&self, id: AccountId, patch: &UserPatch) -> Result<UserRecord, MetaError> {
        let p = patch.clone();
        self.write(move |conn| {
            let origin = p.origin.as_ref().map(origin_parts);
            let n = conn
                .prepare_cached(
                    "UPDATE accounts SET \
                     full_name = COALESCE(?2, full_name), \
                     email = CASE WHEN ?3 THEN ?4 ELSE email END, \
                     password = CASE WHEN ?5 THEN ?6 ELSE password END, \
                     origin = COALESCE(?7, origin), \
                     directory_dn = CASE WHEN ?7 IS NULL THEN directory_dn ELSE ?8 END, \
                     directory_id = CASE WHEN ?7 IS NULL THEN directory_id ELSE ?13 END, \
                     active = COALESCE(?9, active), \
                     system_admin = COALESCE(?10, system_admin), \
                     service_account = COALESCE(?11, service_account), \
                     updated_at = ?12, \
                     credential_epoch = credential_epoch + CASE \
                       WHEN (?5 AND password IS NOT ?6) OR (?9 = 0 AND active = 1) THEN 1 \
                       ELSE 0 END \
                     WHERE id = ?1 AND kind = 'user'",
                )
                .and_then(|mut st| {
                    st.execute(rusqlite::params![
                        id,
                        p.full_name,
                        p.email.is_some(),
                        p.email.clone().flatten(),
                        p.password.is_some(),
                        p.password.clone().flatten(),
                        origin.map(|o| o.0),
                        origin.and_then(|o| o.1),
                        p.active,
                        p.is_system_admin,
                        p.is_service_account,
                        now_ms(),
                        origin.and_then(|o| o.2),
                    ])
                })
                .map_err(|e| write_err(e, &format!("account {id}")))?;
            if n == 0 {
                return Err(MetaError::NotFound(format!("user {id}")));
            }
            let user = user_by_id(conn, id)?;
            if p.password.is_some() || p.active == Some(false) {
                revoke_stale_sessions(conn, id, user.credential_epoch)?;
            }
            Ok(user)
        })
        .await
    }

    async fn user_delete(&self, id: AccountId) -> Result<bool, MetaError> {
        Ok(self.run(USER_DELETE, vec![id.into()]).await? > 0)
    }

    async fn org_create(
        &self,
        name: &str,
        full_name: &str,
        settings: &OrgSettings,
        claim_namespace: bool,
    ) -> Result<OrgRecord, MetaError> {
        check_name("organisation", name)?;
        let (name, full_name, s) = (name.to_string(), full_name.to_string(), *settings);
        self.write(move |conn| {
            check_namespace_free(&name, namespace_held(conn, &name)?, claim_namespace)?;
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO accounts (name, kind, full_name, members_can_create, \
                 default_visibility, created_at, updated_at) \
                 VALUES (?1, 'org', ?2, ?3, ?4, ?5, ?5) RETURNING id",
                )
                .and_then(|mut st| {
                    st.query_row(
                        (
                            &name,
                            &full_name,
                            s.members_can_create,
                            visibility_str(s.default_visibility),
                            now_ms(),
                        ),
                        |r| r.get(0),
                    )
                })
                .map_err(|e| write_err(e, &format!("account {name}")))?;
            if claim_namespace {
                namespace_claim(conn, &name, id)?;
            }
            org_by_name(conn, &name)?
                .ok_or_else(|| MetaError::Backend("organisation vanished".into()))
        })
        .await
    }

    async fn org_get(&self, name: &str) -> Result<Option<OrgRecord>, MetaError> {
        self.fast
            .with(|c| {
                c.prepare_cached(&format!(
                    "SELECT {ORG_COLUMNS} FROM accounts WHERE name = ?1 AND kind = 'org'"
                ))?
                .query_row([name], tuple_row::<OrgRow>)
                .optional()
            })?
            .map(org_record)
            .transpose()
    }

    async fn orgs_list(&self, last: Option<&str>, n: u32) -> Result<Vec<OrgRecord>, MetaError> {
        shared::accounts_page(self.sqlx(), (ORG_COLUMNS, "org"), last, n, org_record).await
    }

    async fn org_update(&self, name: &str, settings: &OrgSettings) -> Result<OrgRecord, MetaError> {
        let (name, s) = (name.to_string(), *settings);
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE accounts SET members_can_create = ?2, default_visibility = ?3, \
                     updated_at = ?4 WHERE name = ?1 AND kind = 'org'",
                )
                .and_then(|mut st| {
                    st.execute((
                        &name,
                        s.members_can_create,
                        visibility_str(s.default_visibility),
                        now_ms(),
                    ))
                })
                .map_err(sql)?;
            if n == 0 {
                return Err(MetaError::NotFound(format!("organisation {name}")));
            }
            org_by_name(conn, &name)?.ok_or_else(|| MetaError::NotFound(name.clone()))
        })
        .await
    }

    async fn org_delete(&self, name: &str) -> Result<bool, MetaError> {
        Ok(self.run(ORG_DELETE, vec![name.into()]).await? > 0)
    }

    async fn org_member_set(
        &self,
        org: &str,
        user: AccountId,
        is_owner: bool,
    ) -> Result<(), MetaError> {
        let org = org.to_string();
        self.write(move |conn| {
            let oid = org_id(conn, &org)?;
            check_user(conn, user)?;
            conn.prepare_cached(
                "INSERT INTO org_members (org_id, user_id, is_owner) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org_id, user_id) DO UPDATE SET is_owner = excluded.is_owner",
            )
            .and_then(|mut st| st.execute((oid, user, is_owner)))
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn org_member_remove(&self, org: &str, user: AccountId) -> Result<bool, MetaError> {
        let org = org.to_string();
        self.write(move |conn| {
            let Ok(oid) = org_id(conn, &org) else {
                return Ok(false);
            };
            conn.prepare_cached(
                "DELETE FROM team_members WHERE user_id = ?2 \
                 AND team_id IN (SELECT id FROM teams WHERE org_id = ?1)",
            )
            .and_then(|mut st| st.execute((oid, user)))
            .map_err(sql)?;
            let n = conn
                .prepare_cached("DELETE FROM org_members WHERE org_id = ?1 AND user_id = ?2")
                .and_then(|mut st| st.execute((oid, user)))
                .map_err(sql)?;
            Ok(n > 0)
        })
        .await
    }

    async fn org_members(&self, org: &str) -> Result<Vec<Member>, MetaError> {
        shared::org_members(self.sqlx(), org).await
    }
}

#[async_trait]
impl TeamStore for SqliteMetaStore {
    async fn team_create(
        &self,
        org: &str,
        name: &str,
        directory_group: Option<&str>,
    ) -> Result<TeamRecord, MetaError> {
        check_name("team", name)?;
        let (org, name, group) = (
            org.to_string(),
            name.to_string(),
            directory_group.map(str::to_string),
        );
        self.write(move |conn| {
            let oid = org_id(conn, &org)?;
            let now = now_ms();
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO teams (org_id, name, directory_group, created_at) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING id",
                )
                .and_then(|mut st| st.query_row((oid, &name, &group, now), |r| r.get(0)))
                .map_err(|e| write_err(e, &format!("team {org}/{name}")))?;
            Ok(team_record(&org, name, (id, group, now)))
        })
        .await
    }

    async fn team_get(&self, org: &str, name: &str) -> Result<Option<TeamRecord>, MetaError> {
        let row: Option<(i64, Option<String>, i64)> = self.fast.with(|c| {
            c.prepare_cached(
                "SELECT t.id, t.directory_group, t.created_at FROM teams t \
                 JOIN accounts o ON o.id = t.org_id WHERE o.name = ?1 AND o.kind = 'org' \
                 AND t.name = ?2",
            )?
            .query_row([org, name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
        })?;
        Ok(row.map(|cols| team_record(org, name.to_string(), cols)))
    }

    async fn teams_list(&self, org: &str) -> Result<Vec<TeamRecord>, MetaError> {
        shared::teams_list(self.sqlx(), org).await
    }

    async fn team_set_directory_group(
        &self,
        org: &str,
        name: &str,
        group: Option<&str>,
    ) -> Result<bool, MetaError> {
        let group = group.map(str::to_string);
        let params = (group, org.to_string(), name.to_string());
        Ok(self.execute(TEAM_SET_GROUP, params).await? > 0)
    }

    async fn team_delete(&self, org: &str, name: &str) -> Result<bool, MetaError> {
        Ok(self.run(TEAM_DELETE, vec![org.into(), name.into()]).await? > 0)
    }

    async fn team_member_add(
        &self,
        org: &str,
        team: &str,
        user: AccountId,
    ) -> Result<(), MetaError> {
        self.with_team(org, team, move |conn, tid| {
            check_user(conn, user)?;
            conn.prepare_cached(
                "INSERT INTO org_members (org_id, user_id, is_owner) \
                 SELECT org_id, ?2, 0 FROM teams WHERE id = ?1 \
                 ON CONFLICT (org_id, user_id) DO NOTHING",
            )
            .and_then(|mut st| st.execute((tid, user)))
            .map_err(sql)?;
            conn.prepare_cached(
                "INSERT INTO team_members (team_id, user_id) VALUES (?1, ?2) \
                 ON CONFLICT (team_id, user_id) DO NOTHING",
            )
            .and_then(|mut st| st.execute((tid, user)))
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn team_member_remove(
        &self,
        org: &str,
        team: &str,
        user: AccountId,
    ) -> Result<bool, MetaError> {
        let args = vec![org.into(), team.into(), user.into()];
        Ok(self.run(TEAM_MEMBER_REMOVE, args).await? > 0)
    }

    async fn team_members(&self, org: &str, team: &str) -> Result<Vec<Member>, MetaError> {
        shared::team_members(self.sqlx(), org, team).await
    }
}

#[async_trait]
impl AccessStore for SqliteMetaStore {
    async fn repo_create(
        &self,
        repo: &RepoName,
        created_by: Option<AccountId>,
        visibility: Option<Visibility>,
    ) -> Result<RepoSettings, MetaError> {
        let repo = repo.clone();
        self.write(move |conn| {
            let now = now_ms();
            let (vis, owner): (String, Option<i64>) = conn
                .prepare_cached(
                    "INSERT INTO repositories (name, created_at, visibility, created_by, owner_id) \
                     VALUES (?1, ?2, COALESCE(?3, (SELECT default_visibility FROM accounts \
                     WHERE name = ?4), 'private'), ?5, (SELECT id FROM accounts WHERE name = ?4)) \
                     RETURNING visibility, owner_id",
                )
                .and_then(|mut st| {
                    st.query_row(
                        (
                            repo.as_str(),
                            now,
                            visibility.map(visibility_str),
                            repo.namespace(),
                            created_by,
                        ),
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                })
                .map_err(|e| write_err(e, &format!("repository {repo}")))?;
            let owner_row: Option<(String, bool)> = conn
                .prepare_cached("SELECT kind, members_can_create FROM accounts WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([owner], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(sql)?;
            let (kind, mcc) = owner_row.map_or((None, None), |(k, m)| (Some(k), Some(m)));
            repo_settings(repo, (vis, created_by, now, kind, mcc))
        })
        .await
    }

    async fn repo_set_visibility(
        &self,
        repo: &RepoName,
        visibility: Visibility,
    ) -> Result<bool, MetaError> {
        let args = vec![visibility_str(visibility).into(), repo.as_str().into()];
        Ok(self.run(REPO_SET_VISIBILITY, args).await? > 0)
    }

    async fn repo_settings(&self, repo: &RepoName) -> Result<Option<RepoSettings>, MetaError> {
        let row: Option<SettingsCols> = self.fast.with(|c| {
            c.prepare_cached(
                "SELECT r.visibility, r.created_by, r.created_at, ns.kind, ns.members_can_create \
                 FROM repositories r LEFT JOIN accounts ns ON ns.id = r.owner_id \
                 WHERE r.name = ?1",
            )?
            .query_row([repo.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })?;
        row.map(|cols| repo_settings(repo.clone(), cols))
            .transpose()
    }

    async fn repo_delete(&self, repo: &RepoName) -> Result<bool, MetaError> {
        Ok(self.run(REPO_DELETE, vec![repo.as_str().into()]).await? > 0)
    }

    async fn grant_repo_set(
        &self,
        org: &str,
        team: &str,
        repo: &RepoName,
        role: Role,
    ) -> Result<(), MetaError> {
        if repo.namespace() != org {
            return Err(MetaError::Invalid(format!(
                "repository {repo} is not in the namespace of organisation {org}"
            )));
        }
        let repo = repo.clone();
        self.with_team(org, team, move |conn, tid| {
            let rid = repo_id(conn, &repo)?
                .ok_or_else(|| MetaError::NotFound(format!("repository {repo}")))?;
            conn.prepare_cached(
                "INSERT INTO repo_grants (team_id, repo_id, role) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (team_id, repo_id) DO UPDATE SET role = excluded.role",
            )
            .and_then(|mut st| st.execute((tid, rid, role.as_str())))
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn repos_list(
        &self,
        namespace: Option<&str>,
        last: Option<&str>,
        n: u32,
    ) -> Result<Vec<RepoSettings>, MetaError> {
        shared::repos_list(self.sqlx(), namespace, last, n).await
    }

    async fn grant_repo_remove(
        &self,
        org: &str,
        team: &str,
        repo: &RepoName,
    ) -> Result<bool, MetaError> {
        let args = vec![org.into(), team.into(), repo.as_str().into()];
        Ok(self.run(GRANT_REPO_REMOVE, args).await? > 0)
    }

    async fn repos_visible(
        &self,
        scope: &VisibleScope,
        namespace: Option<&str>,
        last: Option<&str>,
        n: u32,
    ) -> Result<Vec<RepoSettings>, MetaError> {
        shared::repos_visible(self.sqlx(), scope, namespace, last, n).await
    }

    async fn grant_namespace_set(
        &self,
        org: &str,
        team: &str,
        role: Role,
    ) -> Result<(), MetaError> {
        self.with_team(org, team, move |conn, tid| {
            conn.prepare_cached(
                "INSERT INTO namespace_grants (team_id, role) VALUES (?1, ?2) \
                 ON CONFLICT (team_id) DO UPDATE SET role = excluded.role",
            )
            .and_then(|mut st| st.execute((tid, role.as_str())))
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn grants_of_org(&self, org: &str) -> Result<Vec<Grant>, MetaError> {
        shared::grants(self.sqlx(), GrantsOf::Org(org)).await
    }

    async fn grant_namespace_remove(&self, org: &str, team: &str) -> Result<bool, MetaError> {
        let args = vec![org.into(), team.into()];
        Ok(self.run(GRANT_NAMESPACE_REMOVE, args).await? > 0)
    }

    async fn grants_on_repo(&self, repo: &RepoName) -> Result<Vec<Grant>, MetaError> {
        shared::grants(self.sqlx(), GrantsOf::Repo(repo)).await
    }

    async fn subject_for(&self, key: UserKey<'_>) -> Result<Option<Subject>, MetaError> {
        let (id, name) = key_parts(key);
        let row = self.fast.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {SUBJECT_COLUMNS} FROM accounts u \
                 WHERE u.kind = 'user' AND (u.id = ?1 OR u.name = ?2)"
            ))?
            .query_row((id, name), |r| subject_row(r, 0))
            .optional()
        })?;
        row.flatten().map(subject_from).transpose()
    }

    async fn grants_of_user(&self, user: AccountId) -> Result<Vec<Grant>, MetaError> {
        shared::grants(self.sqlx(), GrantsOf::User(user)).await
    }

    async fn access_for(
        &self,
        user: Option<UserKey<'_>>,
        repo: &RepoName,
    ) -> Result<AccessContext, MetaError> {
        let (id, name) = user.map(key_parts).unwrap_or((None, None));
        type Row4 = (
            Option<SubjectRow>,
            Option<String>,
            Option<String>,
            Option<bool>,
            String,
        );
        let row: Row4 = self.fast.with(|c| {
            c.prepare_cached(&ACCESS_SQL)?.query_row(
                (id, name, repo.as_str(), repo.namespace()),
                |r| {
                    Ok((
                        subject_row(r, 0)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ))
                },
            )
        })?;
        let (subject_cols, vis, ns_kind, mcc, grants_json) = row;
        access_context(subject_cols, vis, ns_kind, mcc, &grants_json, repo)
    }

    async fn repository_for_access(&self, repo: &RepoName) -> Result<Repository, MetaError> {
        Ok(self.access_for(None, repo).await?.repository)
    }
}

#[async_trait]
impl TokenStore for SqliteMetaStore {
    async fn token_create(&self, token: &NewToken) -> Result<TokenRecord, MetaError> {
        check_token_parent(token)?;
        let t = token.clone();
        let restriction = restriction_json(&t.restriction)?;
        self.write(move |conn| {
            check_user(conn, t.user_id)?;
            let epoch: i64 = conn
                .prepare_cached("SELECT credential_epoch FROM accounts WHERE id = ?1")
                .and_then(|mut st| st.query_row([t.user_id], |r| r.get(0)))
                .map_err(sql)?;
            let parent_row = match &t.parent {
                Some(TokenParent::Token(pid)) => conn
                    .prepare_cached(
                        "SELECT kind, user_id, expires_at, revoked FROM tokens WHERE id = ?1",
                    )
                    .and_then(|mut st| {
                        st.query_row([pid.as_str()], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()
                    })
                    .map_err(sql)?,
                _ => None,
            };
            let (expires_at, revoked) = new_token_state(&t, parent_row, epoch)?;
            let (parent_id, parent_epoch) = parent_columns(&t.parent);
            let now = now_ms();
            conn.prepare_cached(
                "INSERT INTO tokens (id, kind, user_id, description, hash, expires_at, \
                 restriction, created_at, revoked, parent_id, credential_epoch) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(rusqlite::params![
                    t.id.as_str(),
                    t.kind.as_str(),
                    t.user_id,
                    t.description,
                    t.hash.to_hex(),
                    expires_at,
                    restriction,
                    now,
                    revoked,
                    parent_id,
                    parent_epoch,
                ])
            })
            .map_err(|e| write_err(e, &format!("token {}", t.id)))?;
            Ok(created_token(t, (expires_at, revoked), now))
        })
        .await
    }

    async fn token_get(&self, id: &SecretId) -> Result<Option<TokenRecord>, MetaError> {
        self.fast
            .with(|c| {
                c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))?
                    .query_row([id.as_str()], tuple_row::<TokenRow>)
                    .optional()
            })?
            .map(token_record)
            .transpose()
    }

    async fn tokens_list(
        &self,
        user: AccountId,
        kind: TokenKind,
    ) -> Result<Vec<TokenRecord>, MetaError> {
        shared::tokens_list(self.sqlx(), user, kind).await
    }

    async fn token_touch(&self, id: &SecretId, at: i64) -> Result<bool, MetaError> {
        Ok(self
            .run(TOKEN_TOUCH, vec![at.into(), id.as_str().into()])
            .await?
            > 0)
    }

    async fn token_revoke(&self, id: &SecretId) -> Result<bool, MetaError> {
        let id = id.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE tokens SET revoked = 1 WHERE id = ?1")
                .and_then(|mut st| st.execute([id.as_str()]))
                .map_err(sql)?;
            conn.prepare_cached(
                "UPDATE tokens SET revoked = 1 WHERE parent_id = ?1 AND revoked = 0",
            )
            .and_then(|mut st| st.execute([id.as_str()]))
            .map_err(sql)?;
            Ok(n > 0)
        })
        .await
    }

    async fn tokens_revoke_all(&self, user: AccountId) -> Result<u64, MetaError> {
        self.run(TOKENS_REVOKE_ALL, vec![user.into()]).await
    }

    async fn signing_key_add(&self, kid: &str, pem: &str) -> Result<SigningKeyRecord, MetaError> {
        let (kid, pem) = (kid.to_string(), pem.to_string());
        self.write(move |conn| {
            let now = now_ms();
            conn.prepare_cached(
                "INSERT INTO signing_keys (kid, pem, created_at) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| st.execute((&kid, &pem, now)))
            .map_err(|e| write_err(e, &format!("signing key {kid}")))?;
            Ok(SigningKeyRecord {
                kid,
                pem,
                created_at: now,
                retired: false,
            })
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetaError> {
        shared::signing_keys(self.sqlx()).await
    }

    async fn signing_key_retire(&self, kid: &str) -> Result<bool, MetaError> {
        Ok(self.run(SIGNING_KEY_RETIRE, vec![kid.into()]).await? > 0)
    }

    async fn signing_key_reseal(&self, kid: &str, from: &str, to: &str) -> Result<bool, MetaError> {
        let args = vec![to.into(), kid.into(), from.into()];
        Ok(self.run(SIGNING_KEY_RESEAL, args).await? > 0)
    }
}

#[async_trait]
impl AuditStore for SqliteMetaStore {
    async fn audit_append(&self, event: &NewAuditEvent) -> Result<i64, MetaError> {
        let e = event.clone();
        let detail = e.detail.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit_log (at, actor_id, source, action, target, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            )
            .and_then(|mut st| {
                st.query_row(
                    (e.at, e.actor, &e.source, &e.action, &e.target, &detail),
                    |r| r.get(0),
                )
            })
            .map_err(sql)
        })
        .await
    }

    async fn audit_prune(&self, before: i64, max: u32) -> Result<u64, MetaError> {
        self.run(AUDIT_PRUNE, vec![before.into(), i64::from(max).into()])
            .await
    }

    async fn audit_query(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        n: u32,
    ) -> Result<Vec<AuditEvent>, MetaError> {
        shared::audit_query(self.sqlx(), filter, before, n).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of a listing page is an index search on `repositories`, never a scan of
    /// the table: an anonymous catalog page costs the same with 20 or 20,000 private
    /// repositories.
    #[tokio::test]
    async fn listing_pages_search_indexes_and_never_scan_the_table() {
        let (_dir, store) = crate::sqlite::tests::temporary().await;
        for scope in [
            VisibleScope {
                public: true,
                ..VisibleScope::default()
            },
            VisibleScope {
                public: true,
                namespaces: vec!["acme".into(), "alice".into()],
                repos: vec!["open/app".into(), "other/x".into()],
            },
        ] {
            for (namespace, last) in [(None, None), (Some("acme"), Some("acme/a"))] {
                let (sql, binds) = visible_page_query(&scope, namespace, last, |i| format!("?{i}"))
                    .expect("a query");
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
                for b in binds {
                    q = q.bind(b);
                }
                let plan: Vec<String> = q
                    .bind(10_i64)
                    .fetch_all(&store.read)
                    .await
                    .expect("explain")
                    .into_iter()
                    .map(|r| r.3)
                    .collect();
                let on_table: Vec<&String> =
                    plan.iter().filter(|l| l.contains("repositories")).collect();
                assert!(!on_table.is_empty(), "{plan:?}");
                for line in on_table {
                    assert!(
                        line.starts_with("SEARCH repositories USING"),
                        "not an index search: {line:?} in {plan:?}"
                    );
                }
                if scope.namespaces.is_empty() {
                    assert!(
                        plan.iter().any(|l| l.contains("repositories_public")),
                        "the public page does not use the public index: {plan:?}"
                    );
                }
            }
        }
    }
}
