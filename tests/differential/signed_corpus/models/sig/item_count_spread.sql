-- description: a LEFT JOIN counted in a derived table grouped by its key, then grouped by the count (TPC-H Q13): per touched user
SELECT c.n_items, count(*) AS users
FROM (
  SELECT u.user_id, count(i.line) AS n_items
  FROM raw.users u
  LEFT JOIN raw.items i ON i.order_id = u.user_id AND i.sku <> 'b'
  GROUP BY u.user_id
) AS c
GROUP BY c.n_items
