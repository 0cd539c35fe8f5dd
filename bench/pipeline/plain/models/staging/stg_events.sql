-- One row per valid event: drops events without a user or an amount,
-- normalises the country code and adds the event's day.
SELECT
    event_id,
    user_id,
    ts,
    CAST(ts AS DATE) AS event_date,
    upper(coalesce(country, 'ZZ')) AS country,
    CAST(amount AS DECIMAL(18, 2)) AS amount,
    _loaded_at
FROM raw.events
WHERE user_id IS NOT NULL
  AND amount IS NOT NULL
