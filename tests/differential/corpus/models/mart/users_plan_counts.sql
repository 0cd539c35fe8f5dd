-- description: GROUP BY over a no-cursor keyed source (updates and hard deletes)
SELECT plan, country, count(*) AS users
FROM raw.users
GROUP BY plan, country
