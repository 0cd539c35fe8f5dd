-- Events, distinct users and revenue per day and country.
SELECT
    event_date,
    country,
    count(*) AS events,
    count(DISTINCT user_id) AS users,
    sum(amount) AS revenue
FROM staging.stg_events
GROUP BY event_date, country
