-- A finding's key and row are written as JSON text and only ever read back whole: vigilo
-- never queries inside them. As jsonb every insert and update parsed them on the server
-- (a 900,000-finding first run: 4.6 s of the server's COPY of the same rows as jsonb, 3.3 s
-- as text) and every read printed them again. Existing values keep jsonb's rendering.
-- The upgrade rewrites the table once, holding its lock until the rewrite is done.
ALTER TABLE findings
  ALTER COLUMN key_json TYPE text USING key_json::text,
  ALTER COLUMN row_json TYPE text USING row_json::text;
