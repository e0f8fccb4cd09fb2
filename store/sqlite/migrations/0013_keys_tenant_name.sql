-- An app manifest finds each of its keys by name within the tenant
-- (keys.Service.ApplyManifest, GET /v1/keys?name=…); without this index
-- each lookup read every key of the tenant.
CREATE INDEX keys_tenant_name ON keys (tenant_id, name, id);
