-- channels_for_update --
SELECT channel_id, doc FROM channels WHERE org_id = $1 AND channel_id = $2 FOR UPDATE;

-- lock_org_channels --
SELECT pg_advisory_xact_lock(7420003, ($1::bigint % 2147483647)::int);

-- claim_dispatch --
SELECT pg_try_advisory_xact_lock(7420004, ($1::bigint % 2147483647)::int);
