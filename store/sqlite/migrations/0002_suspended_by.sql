-- The ancestor whose suspension cascaded to a key, so that resuming the
-- ancestor resumes only what it suspended. NULL for a key suspended in its
-- own right (or not suspended).
ALTER TABLE keys ADD COLUMN suspended_by TEXT;
