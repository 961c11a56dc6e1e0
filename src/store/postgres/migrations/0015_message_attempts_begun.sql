-- When the first delivery call of a message began that may have reached its target: a
-- message whose earlier call may have arrived is looked for before it is sent again.
ALTER TABLE messages ADD COLUMN attempted_at timestamptz;
