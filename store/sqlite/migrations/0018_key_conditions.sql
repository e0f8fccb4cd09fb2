-- Conditional access (issue 14): a key's CEL condition over the request,
-- '' for none. A policy's condition is in its JSON body.
ALTER TABLE keys ADD COLUMN condition TEXT NOT NULL DEFAULT '';
