-- description: a row-level model reading items in an IN with a correlated SUM beside a <> (TPC-H Q20): affected users from the touched partitions' rows now and before
SELECT u.user_id, u.plan
FROM raw.users u
WHERE u.user_id IN (
  SELECT i.order_id
  FROM raw.items i
  WHERE i.qty * 3 > (SELECT sum(x.qty) FROM raw.items x WHERE x.order_id = i.order_id AND x.line <> i.line)
)
