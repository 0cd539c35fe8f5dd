-- Lifetime totals per user.
SELECT
    user_id,
    count(*) AS events,
    sum(amount) AS revenue,
    min(ts) AS first_event_ts,
    max(ts) AS last_event_ts
FROM staging.stg_events
GROUP BY user_id
