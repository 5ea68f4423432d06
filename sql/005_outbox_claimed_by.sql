-- The process id of the nginx worker that last claimed each outbox row.
-- A row left 'sending' after a worker died names the worker that held it,
-- so an operator reading the outbox (and the crash test in t/140) can tell
-- a lease still running in a live worker from one left by a dead worker.
ALTER TABLE outbox ADD COLUMN claimed_by integer;
