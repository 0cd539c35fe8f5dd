-- description: AVG of DECIMAL in a correlated subquery (TPC-H Q17), one-row aggregate: per touched sku
SELECT sum(i.price) AS total, count(*) AS lines
FROM raw.items i
WHERE i.price < (SELECT 0.9 * avg(x.price) FROM raw.items x WHERE x.sku = i.sku)
