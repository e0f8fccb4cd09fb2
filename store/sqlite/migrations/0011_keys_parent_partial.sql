-- Only derived keys have a parent: the index of children by parent holds
-- only them, so creating or importing a key that has none (nearly every
-- key) writes one index fewer. Lookups name a parent (parent_id = ?),
-- which implies parent_id IS NOT NULL, so they still use the index.
DROP INDEX keys_tenant_parent;
CREATE INDEX keys_tenant_parent ON keys (tenant_id, parent_id, id) WHERE parent_id IS NOT NULL;
