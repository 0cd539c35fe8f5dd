-- description: TPC-H Q18 (DuckDB tpch extension), without its final ORDER BY / LIMIT
SELECT
  c_name,
  c_custkey,
  o_orderkey,
  o_orderdate,
  o_totalprice,
  SUM(l_quantity) AS sum_quantity
FROM raw.customer, raw.orders, raw.lineitem
WHERE
  o_orderkey IN (
    SELECT
      l_orderkey
    FROM raw.lineitem
    GROUP BY
      l_orderkey
    HAVING
      SUM(l_quantity) > 300
  )
  AND c_custkey = o_custkey
  AND o_orderkey = l_orderkey
GROUP BY
  c_name,
  c_custkey,
  o_orderkey,
  o_orderdate,
  o_totalprice
