-- description: a one-row aggregate of DISTINCT counts: its row stays when every value leaves
SELECT count(DISTINCT sku) AS skus, count(DISTINCT order_id) AS orders, sum(DISTINCT qty) AS qtys
FROM raw.items
