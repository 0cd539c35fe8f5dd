-- description: window row_number / running sum over PARTITION BY user_id
SELECT event_id, user_id, ts,
       row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS seq,
       sum(amount) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS running_total
FROM raw.events
