-- The directory's immutable identifier of the entry a directory account was created for
-- (`entryUUID` on OpenLDAP, `objectGUID` on Active Directory, as text). A name reused in
-- the directory by another person is another entry: the sync and the login compare this
-- column and do not give that person the account. NULL: not known yet (accounts made
-- before this column, local accounts); adopted at the account's next sync or login.
ALTER TABLE accounts ADD COLUMN directory_id TEXT;
CREATE UNIQUE INDEX accounts_directory_id ON accounts (directory_id) WHERE directory_id IS NOT NULL;
