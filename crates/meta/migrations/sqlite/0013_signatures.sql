-- Keys and certificates users registered to sign with: cosign public keys, Notation
-- signing certificates and trust roots. `id` is the lowercase hex SHA-256 of the DER (a
-- public key's SubjectPublicKeyInfo, a certificate), what a policy names as `key:ID`; a
-- key has one owner, and goes with the account.
CREATE TABLE registered_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('public-key', 'certificate')),
    name       TEXT    NOT NULL,
    pem        TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX registered_keys_by_account ON registered_keys (account_id);

-- Moved on by every change of the registered keys; `facts` is the revision the signature
-- facts were last all verified against (behind `revision`: facts to verify again).
CREATE TABLE registered_keys_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
) STRICT;
INSERT INTO registered_keys_revision (id, revision) VALUES (1, 0);

-- What the registry verified of each cosign or Notation signature it holds: one row per
-- signature (a layer of a signature manifest) and registered key that verifies it, or one
-- row with key_id '' when none does. `via_tag` is the cosign tag (`sha256-<hex>.sig`) the
-- signature counts through while the tag points at it ('' for a referrer): the same
-- manifest under another cosign tag claims another subject, and is verified apart. Written when
-- the signature is pushed and again when the keys change (`keys_revision`: the keys'
-- revision it was verified against); the manifest's deletion takes them along.
CREATE TABLE signature_facts (
    repo_id       INTEGER NOT NULL,
    signature     TEXT    NOT NULL,
    layer         INTEGER NOT NULL,
    key_id        TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    format        TEXT    NOT NULL CHECK (format IN ('cosign', 'notation')),
    via_tag       TEXT    NOT NULL,
    valid         INTEGER NOT NULL,
    reason        TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    keys_revision INTEGER NOT NULL,
    PRIMARY KEY (repo_id, signature, via_tag, layer, key_id),
    FOREIGN KEY (repo_id, signature) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX signature_facts_by_subject ON signature_facts (repo_id, subject);
CREATE INDEX signature_facts_by_keys_revision ON signature_facts (keys_revision);

-- Policy decisions depend on the keys, the facts and team membership: each change moves
-- the policy revision on.
CREATE TRIGGER policy_key_added AFTER INSERT ON registered_keys BEGIN
    UPDATE registered_keys_revision SET revision = revision + 1 WHERE id = 1;
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_key_gone AFTER DELETE ON registered_keys BEGIN
    UPDATE registered_keys_revision SET revision = revision + 1 WHERE id = 1;
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_fact_added AFTER INSERT ON signature_facts BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_fact_gone AFTER DELETE ON signature_facts BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_team_joined AFTER INSERT ON team_members BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_team_left AFTER DELETE ON team_members BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
