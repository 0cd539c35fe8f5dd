-- description: TPC-H Q15's shape (an aggregated CTE over items joined to users and read by MAX in a scalar subquery): recomputed from kept groups, so the SIGKILL and random-history tests cover their state
WITH spend AS (
  SELECT order_id AS user_id, SUM(qty * price) AS total, COUNT(*) AS lines
  FROM raw.items
  WHERE qty > 0
  GROUP BY order_id
)
SELECT u.user_id, u.plan, s.total, s.lines
FROM raw.users u, spend s
WHERE u.user_id = s.user_id AND s.total = (SELECT MAX(total) FROM spend)
