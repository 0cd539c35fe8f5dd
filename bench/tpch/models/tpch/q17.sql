-- description: TPC-H Q17 (DuckDB tpch extension), without its final ORDER BY / LIMIT
SELECT
  SUM(l_extendedprice) / 7.0 AS avg_yearly
FROM raw.lineitem, raw.part
WHERE
  p_partkey = l_partkey
  AND p_brand = 'Brand#23'
  AND p_container = 'MED BOX'
  AND l_quantity < (
    SELECT
      0.2 * AVG(l_quantity)
    FROM raw.lineitem
    WHERE
      l_partkey = p_partkey
  )
