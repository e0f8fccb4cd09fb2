-- A key's usage is read by key and time (WHERE tenant_id = ? AND key_id = ?
-- AND minute BETWEEN …), which the primary key (key_id, minute, code)
-- serves; the tenant's index of the same rows was never the better path
-- and cost every flushed key-minute one more B-tree insert at a random
-- place. Nothing reads minute rows by tenant alone.
DROP INDEX usage_minutes_tenant;
