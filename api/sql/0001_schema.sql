-- Likes schema, version 1. Applied by `python -m api migrate` (alembic) as the
-- migration owner. Roles likes_api and likes_ops must exist beforehand; the
-- deploy (playbooks) and the dev/test stack create them.

-- One row per (post, anonymous client). client_hash is HMAC-SHA256 of the
-- server-issued client id; raw ids are never stored.
CREATE TABLE eng_post_likes (
    post_id     text        NOT NULL,
    client_hash bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, client_hash),
    CONSTRAINT eng_post_likes_post_id_format CHECK (post_id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    CONSTRAINT eng_post_likes_client_hash_len CHECK (octet_length(client_hash) = 32)
);

-- Striped counters: a post's count is the sum of its slots. The slot is taken
-- from the client hash, so a client's like and unlike always touch the same
-- slot and every slot stays >= 0; distinct clients spread over the slots, so a
-- hot post does not serialise on one row. retired_net carries the net of the
-- daily events that retention has deleted, so that
--   like_count = retired_net + sum(daily likes - unlikes)   per (post, slot).
CREATE TABLE eng_post_like_counter_slots (
    post_id     text        NOT NULL,
    slot        smallint    NOT NULL,
    like_count  bigint      NOT NULL DEFAULT 0,
    retired_net bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, slot),
    CONSTRAINT eng_post_like_counter_slots_nonnegative CHECK (like_count >= 0),
    CONSTRAINT eng_post_like_counter_slots_slot_range CHECK (slot >= 0 AND slot < 16)
);
CREATE INDEX eng_post_like_counter_slots_updated_at ON eng_post_like_counter_slots (updated_at);

-- Daily like/unlike events, striped with the same slot as the counter so that
-- keeping them adds no hot row. Retention deletes days older than 90.
CREATE TABLE eng_post_like_events_daily (
    post_id text     NOT NULL,
    day     date     NOT NULL,
    slot    smallint NOT NULL,
    likes   bigint   NOT NULL DEFAULT 0,
    unlikes bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, day, slot),
    CONSTRAINT eng_post_like_events_daily_nonnegative CHECK (likes >= 0 AND unlikes >= 0),
    CONSTRAINT eng_post_like_events_daily_slot_range CHECK (slot >= 0 AND slot < 16)
);
CREATE INDEX eng_post_like_events_daily_day ON eng_post_like_events_daily (day);

-- The runbook's one-row-per-post counter.
CREATE VIEW eng_post_like_counters AS
SELECT post_id,
       sum(like_count)::bigint AS like_count,
       max(updated_at)         AS updated_at
FROM eng_post_like_counter_slots
GROUP BY post_id
HAVING sum(like_count) <> 0;

-- The runbook's orphan check reads `posts(id)`: the posts that have likes.
CREATE VIEW posts AS
SELECT DISTINCT post_id AS id FROM eng_post_likes;

-- Security events (runbook 004), aggregated per minute, IP stored hashed.
CREATE TABLE eng_security_events (
    created_at  timestamptz NOT NULL,          -- start of the minute
    event_type  text        NOT NULL,
    severity    text        NOT NULL,
    ip_hash     bytea       NOT NULL,
    occurrences bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (created_at, event_type, severity, ip_hash),
    CONSTRAINT eng_security_events_severity CHECK (severity IN ('info', 'warning', 'error')),
    CONSTRAINT eng_security_events_occurrences CHECK (occurrences > 0)
);

-- Feature flags (runbook 002). The row 'likes' is the likes kill switch:
-- kill_switch = true (or enabled = false) makes likes read-only.
CREATE TABLE feature_flags (
    name               text        PRIMARY KEY,
    enabled            boolean     NOT NULL DEFAULT true,
    kill_switch        boolean     NOT NULL DEFAULT false,
    rollout_percentage integer     NOT NULL DEFAULT 100,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_flags_rollout CHECK (rollout_percentage BETWEEN 0 AND 100)
);
INSERT INTO feature_flags (name) VALUES ('likes');

-- Like or unlike, in one call and one transaction. Idempotent per
-- (post, client): the counter and the daily events move only when the like row
-- is really inserted or deleted. Raises SQLSTATE LK001 when likes are disabled.
CREATE FUNCTION eng_post_like_apply(p_post_id text, p_client_hash bytea, p_op text)
RETURNS TABLE (liked boolean, changed boolean, like_count bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_slot smallint := get_byte(p_client_hash, 0) % 16;
    v_rows integer;
BEGIN
    IF EXISTS (SELECT 1 FROM feature_flags f
               WHERE f.name = 'likes' AND (f.kill_switch OR NOT f.enabled)) THEN
        RAISE EXCEPTION 'likes are disabled by the kill switch' USING ERRCODE = 'LK001';
    END IF;
    IF p_op = 'like' THEN
        INSERT INTO eng_post_likes (post_id, client_hash) VALUES (p_post_id, p_client_hash)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        liked := true;
        IF v_rows = 1 THEN
            INSERT INTO eng_post_like_counter_slots AS c (post_id, slot, like_count)
            VALUES (p_post_id, v_slot, 1)
            ON CONFLICT (post_id, slot) DO UPDATE
                SET like_count = c.like_count + 1, updated_at = now();
            INSERT INTO eng_post_like_events_daily AS d (post_id, day, slot, likes)
            VALUES (p_post_id, current_date, v_slot, 1)
            ON CONFLICT (post_id, day, slot) DO UPDATE SET likes = d.likes + 1;
        END IF;
    ELSIF p_op = 'unlike' THEN
        DELETE FROM eng_post_likes l WHERE l.post_id = p_post_id AND l.client_hash = p_client_hash;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        liked := false;
        IF v_rows = 1 THEN
            UPDATE eng_post_like_counter_slots c
               SET like_count = c.like_count - 1, updated_at = now()
             WHERE c.post_id = p_post_id AND c.slot = v_slot;
            INSERT INTO eng_post_like_events_daily AS d (post_id, day, slot, unlikes)
            VALUES (p_post_id, current_date, v_slot, 1)
            ON CONFLICT (post_id, day, slot) DO UPDATE SET unlikes = d.unlikes + 1;
        END IF;
    ELSE
        RAISE EXCEPTION 'op must be like or unlike, not %', p_op USING ERRCODE = '22023';
    END IF;
    changed := v_rows = 1;
    SELECT coalesce(sum(c.like_count), 0)::bigint INTO like_count
      FROM eng_post_like_counter_slots c WHERE c.post_id = p_post_id;
    RETURN NEXT;
END;
$$;

-- Counts for up to 100 posts; posts never liked come back as 0.
CREATE FUNCTION eng_post_like_counts(p_post_ids text[])
RETURNS TABLE (post_id text, like_count bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT ids.id, coalesce(sum(c.like_count), 0)::bigint
      FROM unnest(p_post_ids) AS ids(id)
      LEFT JOIN eng_post_like_counter_slots c ON c.post_id = ids.id
     GROUP BY ids.id
$$;

-- Count of one post, and whether one client likes it, in one round trip.
CREATE FUNCTION eng_post_like_status(p_post_id text, p_client_hash bytea)
RETURNS TABLE (like_count bigint, liked boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT (SELECT coalesce(sum(c.like_count), 0)::bigint
              FROM eng_post_like_counter_slots c WHERE c.post_id = p_post_id),
           EXISTS (SELECT 1 FROM eng_post_likes l
                    WHERE l.post_id = p_post_id AND l.client_hash = p_client_hash)
$$;

-- Which of these posts one client likes (for the batch endpoint).
CREATE FUNCTION eng_post_like_liked(p_post_ids text[], p_client_hash bytea)
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT l.post_id FROM eng_post_likes l
     WHERE l.post_id = ANY (p_post_ids) AND l.client_hash = p_client_hash
$$;

-- Adds per-minute security-event tallies flushed by the API processes.
CREATE FUNCTION eng_security_events_record(
    p_minutes timestamptz[], p_types text[], p_severities text[], p_ip_hashes bytea[], p_counts bigint[])
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO eng_security_events AS e (created_at, event_type, severity, ip_hash, occurrences)
    SELECT * FROM unnest(p_minutes, p_types, p_severities, p_ip_hashes, p_counts)
    ON CONFLICT (created_at, event_type, severity, ip_hash)
    DO UPDATE SET occurrences = e.occurrences + excluded.occurrences
$$;

-- Recomputes counters (and their slots) from the like rows, the source of
-- truth. Returns the posts whose count changed, before and after.
CREATE FUNCTION eng_post_like_repair(p_post_ids text[] DEFAULT NULL)
RETURNS TABLE (post_id text, count_before bigint, count_after bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH truth AS (
        SELECT l.post_id, (get_byte(l.client_hash, 0) % 16)::smallint AS slot, count(*)::bigint AS n
          FROM eng_post_likes l
         WHERE p_post_ids IS NULL OR l.post_id = ANY (p_post_ids)
         GROUP BY 1, 2
    ), current AS (
        SELECT c.post_id, c.slot, c.like_count
          FROM eng_post_like_counter_slots c
         WHERE p_post_ids IS NULL OR c.post_id = ANY (p_post_ids)
    ), events AS (
        SELECT e.post_id, e.slot, sum(e.likes - e.unlikes)::bigint AS net
          FROM eng_post_like_events_daily e
         WHERE p_post_ids IS NULL OR e.post_id = ANY (p_post_ids)
         GROUP BY 1, 2
    ), diff AS (
        SELECT coalesce(t.post_id, c.post_id) AS post_id, coalesce(t.slot, c.slot) AS slot,
               coalesce(c.like_count, 0) AS before, coalesce(t.n, 0) AS after
          FROM truth t FULL JOIN current c ON c.post_id = t.post_id AND c.slot = t.slot
    ), fixed AS (
        -- retired_net is the part of a count that the retained daily events do
        -- not explain; a repaired slot gets it recomputed, so the ledger
        -- like_count = retired_net + daily events balances again.
        INSERT INTO eng_post_like_counter_slots AS s (post_id, slot, like_count, retired_net)
        SELECT d.post_id, d.slot, d.after, d.after - coalesce(ev.net, 0)
          FROM diff d LEFT JOIN events ev ON ev.post_id = d.post_id AND ev.slot = d.slot
         WHERE d.before <> d.after
        ON CONFLICT (post_id, slot) DO UPDATE
            SET like_count = excluded.like_count, retired_net = excluded.retired_net, updated_at = now()
        RETURNING s.post_id
    )
    SELECT d.post_id, sum(d.before)::bigint, sum(d.after)::bigint
      FROM diff d
     WHERE d.post_id IN (SELECT f.post_id FROM fixed f)
     GROUP BY d.post_id
     ORDER BY d.post_id;
END;
$$;

-- The runbook's "fix counts" UPDATE on the view recomputes that post from its
-- like rows instead of writing an arbitrary number.
CREATE FUNCTION eng_post_like_counters_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM eng_post_like_repair(ARRAY[OLD.post_id]);
    RETURN NEW;
END;
$$;
CREATE TRIGGER eng_post_like_counters_update INSTEAD OF UPDATE ON eng_post_like_counters
    FOR EACH ROW EXECUTE FUNCTION eng_post_like_counters_update();

-- Row-level security: on for every eng_ table. The API role may read; writes
-- happen only through the SECURITY DEFINER functions above, as the owner.
ALTER TABLE eng_post_likes ENABLE ROW LEVEL SECURITY;
ALTER TABLE eng_post_like_counter_slots ENABLE ROW LEVEL SECURITY;
ALTER TABLE eng_post_like_events_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE eng_security_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY eng_post_like_counter_slots_read ON eng_post_like_counter_slots FOR SELECT TO likes_api, likes_ops USING (true);
CREATE POLICY eng_post_like_events_daily_read ON eng_post_like_events_daily FOR SELECT TO likes_ops USING (true);
CREATE POLICY eng_post_likes_read ON eng_post_likes FOR SELECT TO likes_ops USING (true);
CREATE POLICY eng_security_events_read ON eng_security_events FOR SELECT TO likes_ops USING (true);

-- Least privilege.
REVOKE ALL ON eng_post_likes, eng_post_like_counter_slots, eng_post_like_events_daily, eng_post_like_counters,
    posts, eng_security_events, feature_flags FROM PUBLIC;
REVOKE ALL ON FUNCTION eng_post_like_apply(text, bytea, text), eng_post_like_counts(text[]),
    eng_post_like_status(text, bytea), eng_post_like_liked(text[], bytea),
    eng_security_events_record(timestamptz[], text[], text[], bytea[], bigint[]),
    eng_post_like_repair(text[]), eng_post_like_counters_update() FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO likes_api, likes_ops;
GRANT SELECT ON eng_post_like_counter_slots, eng_post_like_counters, feature_flags TO likes_api;
GRANT EXECUTE ON FUNCTION eng_post_like_apply(text, bytea, text), eng_post_like_counts(text[]),
    eng_post_like_status(text, bytea), eng_post_like_liked(text[], bytea),
    eng_security_events_record(timestamptz[], text[], text[], bytea[], bigint[]) TO likes_api;
GRANT SELECT ON eng_post_likes, eng_post_like_counter_slots, eng_post_like_events_daily, eng_post_like_counters,
    posts, eng_security_events, feature_flags TO likes_ops;
GRANT UPDATE ON feature_flags TO likes_ops;
GRANT EXECUTE ON FUNCTION eng_post_like_repair(text[]), eng_post_like_counts(text[]) TO likes_ops;
