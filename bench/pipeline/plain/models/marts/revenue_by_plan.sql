-- Revenue per day and the user's current plan.
SELECT
    e.event_date,
    u.plan,
    count(*) AS events,
    count(DISTINCT e.user_id) AS users,
    sum(e.amount) AS revenue
FROM staging.stg_events AS e
JOIN raw.users AS u ON e.user_id = u.user_id
GROUP BY e.event_date, u.plan
