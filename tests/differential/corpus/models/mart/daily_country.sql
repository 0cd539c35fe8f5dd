-- description: GROUP BY day, country with count/sum/avg/min/max (NULL country included)
SELECT day, country, count(*) AS n, sum(amount) AS total, avg(amount) AS avg_amount,
       min(amount) AS min_amount, max(amount) AS max_amount
FROM stg.stg_events
GROUP BY day, country
