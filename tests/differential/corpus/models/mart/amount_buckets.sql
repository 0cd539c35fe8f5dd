-- description: CASE expression in the group key
SELECT CASE WHEN amount < 10 THEN 'small' WHEN amount < 100 THEN 'medium' ELSE 'large' END AS bucket,
       count(*) AS n, sum(amount) AS total
FROM raw.events
GROUP BY 1
