-- description: TPC-H Q11 (DuckDB tpch extension), without its final ORDER BY / LIMIT
SELECT
  ps_partkey,
  SUM(ps_supplycost * ps_availqty) AS value
FROM raw.partsupp, raw.supplier, raw.nation
WHERE
  ps_suppkey = s_suppkey AND s_nationkey = n_nationkey AND n_name = 'GERMANY'
GROUP BY
  ps_partkey
HAVING
  SUM(ps_supplycost * ps_availqty) > (
    SELECT
      SUM(ps_supplycost * ps_availqty) * 0.0001000000
    FROM raw.partsupp, raw.supplier, raw.nation
    WHERE
      ps_suppkey = s_suppkey AND s_nationkey = n_nationkey AND n_name = 'GERMANY'
  )
