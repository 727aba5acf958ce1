-- The public repositories, in name order: an anonymous caller's catalog page is a range
-- scan of this index, whatever number of private repositories the registry holds.
CREATE INDEX repositories_public ON repositories (name) WHERE visibility = 'public';
