-- description: an aggregated CTE over users with a NULL group (country), MIN and HAVING, kept and compared with its own SUM
WITH c AS (
  SELECT country, COUNT(*) AS n, MIN(plan) AS first_plan
  FROM raw.users
  GROUP BY country
  HAVING COUNT(*) > 1
)
SELECT c.country, c.n, c.first_plan
FROM c
WHERE c.n * 5 >= (SELECT SUM(n) FROM c)
