-- description: NULL group keys (country), deletes, users moving between countries and plans
SELECT country, plan, count(*) AS users, count(country) AS with_country, min(user_id) AS first_user
FROM raw.users
GROUP BY country, plan
