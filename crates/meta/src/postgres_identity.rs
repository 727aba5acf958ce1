//! [`IdentityStore`] on PostgreSQL. Multi-statement writes run in one transaction; races
//! between replicas end in the database's constraints (a taken name is a unique violation,
//! reported as `Conflict`). The access decision's inputs are one statement.

use crate::convert::now_ms;
use crate::identity::*;
use crate::shared::USER_DELETE;
use crate::shared::{self, grants_sql, team_record, GrantsOf, Statements, ORG_ID, TEAM_ID};
use crate::shared::{AUDIT_PRUNE, GRANT_NAMESPACE_REMOVE, GRANT_REPO_REMOVE, ORG_DELETE};
use crate::shared::{
    REPO_DELETE, REPO_SET_VISIBILITY, SIGNING_KEY_RESEAL, SIGNING_KEY_RETIRE, TEAM_DELETE,
};
use crate::shared::{TEAM_MEMBER_REMOVE, TEAM_SET_GROUP, TOKENS_REVOKE_ALL, TOKEN_TOUCH};
use crate::{MetaError, PgMetaStore};
use async_trait::async_trait;
use berth_auth::rbac::{Grant, Repository, Role, Subject, Visibility};
use berth_auth::secret::SecretId;
use berth_oci::RepoName;
use sqlx::postgres::PgConnection;

/// Maps constraint failures to the errors callers act on.
fn write_err(e: sqlx::Error, what: &str) -> MetaError {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("23505") => return MetaError::Conflict(what.to_string()),
            Some("23503") => return MetaError::NotFound(format!("what {what} refers to")),
            _ => {}
        }
    }
    e.into()
}

fn key_parts(key: UserKey<'_>) -> (Option<i64>, Option<&str>) {
    match key {
        UserKey::Id(id) => (Some(id), None),
        UserKey::Name(n) => (None, Some(n)),
    }
}

async fn org_id(conn: &mut PgConnection, org: &str) -> Result<i64, MetaError> {
    sqlx::query_scalar(ORG_ID)
        .bind(org)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| MetaError::NotFound(format!("organisation {org}")))
}

async fn team_id(conn: &mut PgConnection, org: &str, team: &str) -> Result<i64, MetaError> {
    sqlx::query_scalar(TEAM_ID)
        .bind(org)
        .bind(team)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| MetaError::NotFound(format!("team {org}/{team}")))
}

async fn check_user(conn: &mut PgConnection, user: AccountId) -> Result<(), MetaError> {
    let found: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND kind = 'user')",
    )
    .bind(user)
    .fetch_one(conn)
    .await?;
    if found {
        Ok(())
    } else {
        Err(MetaError::NotFound(format!("user {user}")))
    }
}

/// Serialises, per namespace name, the transactions that decide who owns a namespace's
/// repositories: account creation and deletion, and repository creation
/// ([`crate::postgres::ensure_repo`], [`IdentityStore::repo_create`]). Without it, under
/// READ COMMITTED, an account created while a repository of its name is being created
/// would not see the repository (and take the name although the namespace holds one),
/// and the repository would not see the account (and be owned by nobody). Held until the
/// transaction ends.
pub(crate) async fn lock_namespace(conn: &mut PgConnection, ns: &str) -> Result<(), MetaError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('berth.namespace'), hashtext($1))")
        .bind(ns)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether repositories that no account owns are in namespace `ns`.
async fn namespace_held(conn: &mut PgConnection, ns: &str) -> Result<bool, MetaError> {
    let (slash, after) = namespace_bounds(ns);
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM repositories WHERE owner_id IS NULL \
         AND (name = $1 OR (name >= $2 AND name < $3)))",
    )
    .bind(ns)
    .bind(slash)
    .bind(after)
    .fetch_one(conn)
    .await?)
}

/// Gives the repositories of namespace `ns` that no account owns to account `owner`.
async fn namespace_claim(
    conn: &mut PgConnection,
    ns: &str,
    owner: AccountId,
) -> Result<(), MetaError> {
    let (slash, after) = namespace_bounds(ns);
    sqlx::query(
        "UPDATE repositories SET owner_id = $4 WHERE owner_id IS NULL \
         AND (name = $1 OR (name >= $2 AND name < $3))",
    )
    .bind(ns)
    .bind(slash)
    .bind(after)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(())
}

const SUBJECT_COLUMNS: &str = "u.id, u.name, u.system_admin, u.active, \
    (SELECT COALESCE(json_agg(json_build_object('org', o.name, 'is_owner', m.is_owner)), '[]')::text \
     FROM org_members m JOIN accounts o ON o.id = m.org_id WHERE m.user_id = u.id), \
    (SELECT COALESCE(json_agg(json_build_object('org', o.name, 'team', t.name)), '[]')::text \
     FROM team_members tm JOIN teams t ON t.id = tm.team_id \
     JOIN accounts o ON o.id = t.org_id WHERE tm.user_id = u.id)";

type SubjectCols = (
    Option<i64>,
    Option<String>,
    Option<bool>,
    Option<bool>,
    Option<String>,
    Option<String>,
);

fn subject_cols(c: SubjectCols) -> Option<(i64, String, bool, bool, String, String)> {
    match c {
        (Some(id), Some(name), Some(admin), Some(active), Some(orgs), Some(teams)) => {
            Some((id, name, admin, active, orgs, teams))
        }
        _ => None,
    }
}

/// See the SQLite twin (the namespace account of an existing repository is its owner, by
/// id). Built once: it runs on every authenticated request.
static ACCESS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(access_sql);

fn access_sql() -> String {
    let grants = grants_sql(
        "r.name = $3 AND o.name = $4 AND t.id IN (SELECT team_id FROM team_members WHERE user_id = u.id)",
        "o.name = $4 AND t.id IN (SELECT team_id FROM team_members WHERE user_id = u.id)",
    );
    format!(
        "SELECT {SUBJECT_COLUMNS}, \
         rp.visibility, ns.kind, ns.members_can_create, \
         (SELECT COALESCE(json_agg(json_build_array(gorg, gteam, grepo, grole)), '[]')::text \
          FROM ({grants}) g) \
         FROM (SELECT 1) one \
         LEFT JOIN accounts u ON u.kind = 'user' AND (u.id = $1 OR u.name = $2) \
         LEFT JOIN repositories rp ON rp.name = $3 \
         LEFT JOIN accounts ns ON ns.id = CASE WHEN rp.id IS NULL \
             THEN (SELECT id FROM accounts WHERE name = $4) ELSE rp.owner_id END"
    )
}

async fn org_by_name(conn: &mut PgConnection, name: &str) -> Result<Option<OrgRecord>, MetaError> {
    let row: Option<OrgRow> = sqlx::query_as(&format!(
        "SELECT {ORG_COLUMNS} FROM accounts WHERE name = $1 AND kind = 'org'"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.map(org_record).transpose()
}

#[async_trait]
impl AccountStore for PgMetaStore {
    async fn user_create(&self, user: &NewUser) -> Result<UserRecord, MetaError> {
        check_name("user", &user.name)?;
        let now = now_ms();
        let (origin, dn, did) = origin_parts(&user.origin);
        let mut tx = self.pool.begin().await?;
        lock_namespace(&mut tx, &user.name).await?;
        let held = namespace_held(&mut tx, &user.name).await?;
        check_namespace_free(&user.name, held, user.claim_namespace)?;
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO accounts (name, kind, full_name, email, password, origin, \
             directory_dn, active, system_admin, service_account, created_at, updated_at, \
             directory_id) \
             VALUES ($1, 'user', $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(&user.name)
        .bind(&user.full_name)
        .bind(&user.email)
        .bind(&user.password)
        .bind(origin)
        .bind(dn)
        .bind(user.active)
        .bind(user.is_system_admin)
        .bind(user.is_service_account)
        .bind(now)
        .bind(did)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_err(e, &format!("account {}", user.name)))?;
        if user.claim_namespace {
            namespace_claim(&mut tx, &user.name, row.0).await?;
        }
        tx.commit().await?;
        user_record(row)
    }

    async fn user_get(&self, key: UserKey<'_>) -> Result<Option<UserRecord>, MetaError> {
        let (id, name) = key_parts(key);
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM accounts WHERE kind = 'user' AND (id = $1 OR name = $2)"
        ))
        .bind(id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(user_record).transpose()
    }

    async fn users_list(&self, last: Option<&str>, n: u32) -> Result<Vec<UserRecord>, MetaError> {
        shared::accounts_page(self.sqlx(), (USER_COLUMNS, "user"), last, n, user_record).await
    }

    async fn user_update(&self, id: AccountId, patch: &UserPatch) -> Result<UserRecord, MetaError> {
        let origin = patch.origin.as_ref().map(origin_parts);
        let mut tx = self.pool.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE accounts SET \
             full_name = COALESCE($2, full_name), \
             email = CASE WHEN $3 THEN $4 ELSE email END, \
             password = CASE WHEN $5 THEN $6 ELSE password END, \
             origin = COALESCE($7, origin), \
             directory_dn = CASE WHEN $7::text IS NULL THEN directory_dn ELSE $8 END, \
             directory_id = CASE WHEN $7::text IS NULL THEN directory_id ELSE $13 END, \
             active = COALESCE($9, active), \
             system_admin = COALESCE($10, system_admin), \
             service_account = COALESCE($11, service_account), \
             updated_at = $12, \
             credential_epoch = credential_epoch + CASE \
               WHEN ($5 AND password IS DISTINCT FROM $6) OR ($9 = FALSE AND active) THEN 1 \
               ELSE 0 END \
             WHERE id = $1 AND kind = 'user' RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(&patch.full_name)
        .bind(patch.email.is_some())
        .bind(patch.email.clone().flatten())
        .bind(patch.password.is_some())
        .bind(patch.password.clone().flatten())
        .bind(origin.map(|o| o.0))
        .bind(origin.and_then(|o| o.1))
        .bind(patch.active)
        .bind(patch.is_system_admin)
        .bind(patch.is_service_account)
        .bind(now_ms())
        .bind(origin.and_then(|o| o.2))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| write_err(e, &format!("account {id}")))?;
        let Some(row) = row else {
            return Err(MetaError::NotFound(format!("user {id}")));
        };
        let user = user_record(row)?;
        if patch.password.is_some() || patch.active == Some(false) {
            // The refresh tokens of password logins under an earlier epoch.
            sqlx::query(
                "UPDATE tokens SET revoked = TRUE WHERE user_id = $1 AND kind = 'refresh' \
                 AND credential_epoch IS NOT NULL AND credential_epoch <> $2 AND NOT revoked",
            )
            .bind(id)
            .bind(user.credential_epoch)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    async fn user_delete(&self, id: AccountId) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM accounts WHERE id = $1 AND kind = 'user'")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(name) = name else {
            return Ok(false);
        };
        lock_namespace(&mut tx, &name).await?;
        let r = sqlx::query(USER_DELETE).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn org_create(
        &self,
        name: &str,
        full_name: &str,
        settings: &OrgSettings,
        claim_namespace: bool,
    ) -> Result<OrgRecord, MetaError> {
        check_name("organisation", name)?;
        let mut tx = self.pool.begin().await?;
        lock_namespace(&mut tx, name).await?;
        let held = namespace_held(&mut tx, name).await?;
        check_namespace_free(name, held, claim_namespace)?;
        let row: OrgRow = sqlx::query_as(&format!(
            "INSERT INTO accounts (name, kind, full_name, members_can_create, \
             default_visibility, created_at, updated_at) \
             VALUES ($1, 'org', $2, $3, $4, $5, $5) RETURNING {ORG_COLUMNS}"
        ))
        .bind(name)
        .bind(full_name)
        .bind(settings.members_can_create)
        .bind(visibility_str(settings.default_visibility))
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_err(e, &format!("account {name}")))?;
        if claim_namespace {
            namespace_claim(&mut tx, name, row.0).await?;
        }
        tx.commit().await?;
        org_record(row)
    }

    async fn org_get(&self, name: &str) -> Result<Option<OrgRecord>, MetaError> {
        let mut conn = self.pool.acquire().await?;
        org_by_name(&mut conn, name).await
    }

    async fn orgs_list(&self, last: Option<&str>, n: u32) -> Result<Vec<OrgRecord>, MetaError> {
        shared::accounts_page(self.sqlx(), (ORG_COLUMNS, "org"), last, n, org_record).await
    }

    async fn org_update(&self, name: &str, settings: &OrgSettings) -> Result<OrgRecord, MetaError> {
        let row: Option<OrgRow> = sqlx::query_as(&format!(
            "UPDATE accounts SET members_can_create = $2, default_visibility = $3, \
             updated_at = $4 WHERE name = $1 AND kind = 'org' RETURNING {ORG_COLUMNS}"
        ))
        .bind(name)
        .bind(settings.members_can_create)
        .bind(visibility_str(settings.default_visibility))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => org_record(row),
            None => Err(MetaError::NotFound(format!("organisation {name}"))),
        }
    }

    async fn org_delete(&self, name: &str) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        lock_namespace(&mut tx, name).await?;
        let r = sqlx::query(ORG_DELETE).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn org_member_set(
        &self,
        org: &str,
        user: AccountId,
        is_owner: bool,
    ) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        let oid = org_id(&mut tx, org).await?;
        check_user(&mut tx, user).await?;
        sqlx::query(
            "INSERT INTO org_members (org_id, user_id, is_owner) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id, user_id) DO UPDATE SET is_owner = excluded.is_owner",
        )
        .bind(oid)
        .bind(user)
        .bind(is_owner)
        .execute(&mut *tx)
        .await
        .map_err(|e| write_err(e, "membership"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn org_member_remove(&self, org: &str, user: AccountId) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        let Ok(oid) = org_id(&mut tx, org).await else {
            return Ok(false);
        };
        sqlx::query(
            "DELETE FROM team_members WHERE user_id = $2 \
             AND team_id IN (SELECT id FROM teams WHERE org_id = $1)",
        )
        .bind(oid)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(oid)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn org_members(&self, org: &str) -> Result<Vec<Member>, MetaError> {
        shared::org_members(self.sqlx(), org).await
    }
}

#[async_trait]
impl TeamStore for PgMetaStore {
    async fn team_create(
        &self,
        org: &str,
        name: &str,
        directory_group: Option<&str>,
    ) -> Result<TeamRecord, MetaError> {
        check_name("team", name)?;
        let mut conn = self.pool.acquire().await?;
        let oid = org_id(&mut conn, org).await?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO teams (org_id, name, directory_group, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(oid)
        .bind(name)
        .bind(directory_group)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| write_err(e, &format!("team {org}/{name}")))?;
        let group = directory_group.map(str::to_string);
        Ok(team_record(org, name.to_string(), (id, group, now)))
    }

    async fn team_get(&self, org: &str, name: &str) -> Result<Option<TeamRecord>, MetaError> {
        let row: Option<(i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT t.id, t.directory_group, t.created_at FROM teams t \
             JOIN accounts o ON o.id = t.org_id WHERE o.name = $1 AND o.kind = 'org' \
             AND t.name = $2",
        )
        .bind(org)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
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
        let q = sqlx::query(TEAM_SET_GROUP).bind(group);
        self.changed(q.bind(org).bind(name)).await
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
        let mut tx = self.pool.begin().await?;
        let tid = team_id(&mut tx, org, team).await?;
        check_user(&mut tx, user).await?;
        sqlx::query(
            "INSERT INTO org_members (org_id, user_id, is_owner) \
             SELECT org_id, $2, FALSE FROM teams WHERE id = $1 \
             ON CONFLICT (org_id, user_id) DO NOTHING",
        )
        .bind(tid)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(|e| write_err(e, "membership"))?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) \
             ON CONFLICT (team_id, user_id) DO NOTHING",
        )
        .bind(tid)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(|e| write_err(e, "membership"))?;
        tx.commit().await?;
        Ok(())
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
impl AccessStore for PgMetaStore {
    async fn repo_create(
        &self,
        repo: &RepoName,
        created_by: Option<AccountId>,
        visibility: Option<Visibility>,
    ) -> Result<RepoSettings, MetaError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        lock_namespace(&mut tx, repo.namespace()).await?;
        let (vis, owner): (String, Option<i64>) = sqlx::query_as(
            "INSERT INTO repositories (name, created_at, visibility, created_by, owner_id) \
             VALUES ($1, $2, COALESCE($3, (SELECT default_visibility FROM accounts \
             WHERE name = $4), 'private'), $5, (SELECT id FROM accounts WHERE name = $4)) \
             RETURNING visibility, owner_id",
        )
        .bind(repo.as_str())
        .bind(now)
        .bind(visibility.map(visibility_str))
        .bind(repo.namespace())
        .bind(created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_err(e, &format!("repository {repo}")))?;
        let owner_row: Option<(String, bool)> =
            sqlx::query_as("SELECT kind, members_can_create FROM accounts WHERE id = $1")
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        let (kind, mcc) = owner_row.map_or((None, None), |(k, m)| (Some(k), Some(m)));
        repo_settings(repo.clone(), (vis, created_by, now, kind, mcc))
    }

    async fn repo_settings(&self, repo: &RepoName) -> Result<Option<RepoSettings>, MetaError> {
        let row: Option<SettingsCols> = sqlx::query_as(
            "SELECT r.visibility, r.created_by, r.created_at, ns.kind, ns.members_can_create \
                 FROM repositories r LEFT JOIN accounts ns ON ns.id = r.owner_id \
                 WHERE r.name = $1",
        )
        .bind(repo.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|cols| repo_settings(repo.clone(), cols))
            .transpose()
    }

    async fn repo_set_visibility(
        &self,
        repo: &RepoName,
        visibility: Visibility,
    ) -> Result<bool, MetaError> {
        let args = vec![visibility_str(visibility).into(), repo.as_str().into()];
        Ok(self.run(REPO_SET_VISIBILITY, args).await? > 0)
    }

    async fn repos_list(
        &self,
        namespace: Option<&str>,
        last: Option<&str>,
        n: u32,
    ) -> Result<Vec<RepoSettings>, MetaError> {
        shared::repos_list(self.sqlx(), namespace, last, n).await
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
        let mut tx = self.pool.begin().await?;
        let tid = team_id(&mut tx, org, team).await?;
        let rid: i64 = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| MetaError::NotFound(format!("repository {repo}")))?;
        sqlx::query(
            "INSERT INTO repo_grants (team_id, repo_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (team_id, repo_id) DO UPDATE SET role = excluded.role",
        )
        .bind(tid)
        .bind(rid)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| write_err(e, "grant"))?;
        tx.commit().await?;
        Ok(())
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

    async fn grant_namespace_set(
        &self,
        org: &str,
        team: &str,
        role: Role,
    ) -> Result<(), MetaError> {
        let mut conn = self.pool.acquire().await?;
        let tid = team_id(&mut conn, org, team).await?;
        sqlx::query(
            "INSERT INTO namespace_grants (team_id, role) VALUES ($1, $2) \
             ON CONFLICT (team_id) DO UPDATE SET role = excluded.role",
        )
        .bind(tid)
        .bind(role.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| write_err(e, "grant"))?;
        Ok(())
    }

    async fn grant_namespace_remove(&self, org: &str, team: &str) -> Result<bool, MetaError> {
        let args = vec![org.into(), team.into()];
        Ok(self.run(GRANT_NAMESPACE_REMOVE, args).await? > 0)
    }

    async fn grants_of_org(&self, org: &str) -> Result<Vec<Grant>, MetaError> {
        shared::grants(self.sqlx(), GrantsOf::Org(org)).await
    }

    async fn grants_on_repo(&self, repo: &RepoName) -> Result<Vec<Grant>, MetaError> {
        shared::grants(self.sqlx(), GrantsOf::Repo(repo)).await
    }

    async fn grants_of_user(&self, user: AccountId) -> Result<Vec<Grant>, MetaError> {
        shared::grants(self.sqlx(), GrantsOf::User(user)).await
    }

    async fn subject_for(&self, key: UserKey<'_>) -> Result<Option<Subject>, MetaError> {
        let (id, name) = key_parts(key);
        let row: Option<(i64, String, bool, bool, String, String)> = sqlx::query_as(&format!(
            "SELECT {SUBJECT_COLUMNS} FROM accounts u \
                 WHERE u.kind = 'user' AND (u.id = $1 OR u.name = $2)"
        ))
        .bind(id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, name, admin, active, orgs, teams)| {
            subject(id, name, admin, active, &orgs, &teams)
        })
        .transpose()
    }

    async fn repository_for_access(&self, repo: &RepoName) -> Result<Repository, MetaError> {
        Ok(self.access_for(None, repo).await?.repository)
    }

    async fn access_for(
        &self,
        user: Option<UserKey<'_>>,
        repo: &RepoName,
    ) -> Result<AccessContext, MetaError> {
        let (id, name) = user.map(key_parts).unwrap_or((None, None));
        #[allow(clippy::type_complexity)]
        let row: (
            Option<i64>,
            Option<String>,
            Option<bool>,
            Option<bool>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<bool>,
            String,
        ) = sqlx::query_as(ACCESS_SQL.as_str())
            .bind(id)
            .bind(name)
            .bind(repo.as_str())
            .bind(repo.namespace())
            .fetch_one(&self.pool)
            .await?;
        let (uid, uname, admin, active, orgs, teams, vis, ns_kind, mcc, grants_json) = row;
        access_context(
            subject_cols((uid, uname, admin, active, orgs, teams)),
            vis,
            ns_kind,
            mcc,
            &grants_json,
            repo,
        )
    }
}

#[async_trait]
impl TokenStore for PgMetaStore {
    async fn token_create(&self, token: &NewToken) -> Result<TokenRecord, MetaError> {
        check_token_parent(token)?;
        let restriction = restriction_json(&token.restriction)?;
        let mut tx = self.pool.begin().await?;
        check_user(&mut tx, token.user_id).await?;
        // Locks the user's row, so a password change cannot slip between this read and
        // the insert.
        let epoch: i64 =
            sqlx::query_scalar("SELECT credential_epoch FROM accounts WHERE id = $1 FOR SHARE")
                .bind(token.user_id)
                .fetch_one(&mut *tx)
                .await?;
        let parent_row: Option<ParentRow> = match &token.parent {
            Some(TokenParent::Token(pid)) => {
                sqlx::query_as(
                    "SELECT kind, user_id, expires_at, revoked FROM tokens WHERE id = $1 \
                     FOR SHARE",
                )
                .bind(pid.as_str())
                .fetch_optional(&mut *tx)
                .await?
            }
            _ => None,
        };
        let (expires_at, revoked) = new_token_state(token, parent_row, epoch)?;
        let (parent_id, parent_epoch) = parent_columns(&token.parent);
        let now = now_ms();
        sqlx::query(
            "INSERT INTO tokens (id, kind, user_id, description, hash, expires_at, \
             restriction, created_at, revoked, parent_id, credential_epoch) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(token.id.as_str())
        .bind(token.kind.as_str())
        .bind(token.user_id)
        .bind(&token.description)
        .bind(token.hash.to_hex())
        .bind(expires_at)
        .bind(restriction)
        .bind(now)
        .bind(revoked)
        .bind(parent_id)
        .bind(parent_epoch)
        .execute(&mut *tx)
        .await
        .map_err(|e| write_err(e, &format!("token {}", token.id)))?;
        tx.commit().await?;
        Ok(created_token(token.clone(), (expires_at, revoked), now))
    }

    async fn token_get(&self, id: &SecretId) -> Result<Option<TokenRecord>, MetaError> {
        let row: Option<TokenRow> =
            sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(token_record).transpose()
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
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE tokens SET revoked = TRUE WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tokens SET revoked = TRUE WHERE parent_id = $1 AND NOT revoked")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn tokens_revoke_all(&self, user: AccountId) -> Result<u64, MetaError> {
        self.run(TOKENS_REVOKE_ALL, vec![user.into()]).await
    }

    async fn signing_key_add(&self, kid: &str, pem: &str) -> Result<SigningKeyRecord, MetaError> {
        let now = now_ms();
        sqlx::query("INSERT INTO signing_keys (kid, pem, created_at) VALUES ($1, $2, $3)")
            .bind(kid)
            .bind(pem)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| write_err(e, &format!("signing key {kid}")))?;
        Ok(SigningKeyRecord {
            kid: kid.to_string(),
            pem: pem.to_string(),
            created_at: now,
            retired: false,
        })
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
impl AuditStore for PgMetaStore {
    async fn audit_append(&self, event: &NewAuditEvent) -> Result<i64, MetaError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor_id, source, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(event.at)
        .bind(event.actor)
        .bind(&event.source)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.detail.to_string())
        .fetch_one(&self.pool)
        .await?)
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
