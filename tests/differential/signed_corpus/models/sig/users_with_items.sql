-- description: a correlated EXISTS (TPC-H Q4), decorrelated into a join with the distinct keys of items; users and items both change
SELECT u.plan, count(*) AS users, min(u.user_id) AS first_user
FROM raw.users u
WHERE u.country IS NOT NULL
  AND EXISTS (SELECT 1 FROM raw.items i WHERE i.order_id = u.user_id AND i.qty > 1)
GROUP BY u.plan
