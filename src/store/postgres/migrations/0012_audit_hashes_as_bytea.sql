-- An entry's hash is kept as its 32 bytes instead of 64 hex characters, and its prev_hash
-- is no longer kept: it is the hash of the entry before it (the genesis hash before the
-- first), read back from that entry. The two hex columns were 130 of an entry's bytes on
-- disk, and each was counted character by character for its CHECK. Verification loses
-- nothing: a stored hash was computed over the prev_hash it followed, so an edited or
-- reordered entry fails its hash check as before. Two kinds of tampering only the dropped
-- column or the hex text could show are kept as evidence: an entry whose prev_hash is not
-- its predecessor's hash, and a hash that is not 64 lowercase hex characters, get 32 zero
-- bytes as their hash, which fail that check at the same seq (instead of failing the
-- upgrade). The upgrade rewrites the table once, holding its lock until it is done.
UPDATE audit a SET hash = repeat('0', 64)
  FROM (SELECT seq, lag(hash) OVER (ORDER BY seq) AS before FROM audit) p
 WHERE p.seq = a.seq
   AND (a.prev_hash <> coalesce(p.before, repeat('0', 64)) OR a.hash !~ '^[0-9a-f]{64}$');

ALTER TABLE audit
  DROP COLUMN prev_hash,
  DROP CONSTRAINT audit_hash_check,
  ALTER COLUMN hash TYPE bytea USING decode(hash, 'hex'),
  ADD CONSTRAINT audit_hash_check CHECK (length(hash) = 32);
