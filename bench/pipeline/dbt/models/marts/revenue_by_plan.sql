{#- Same pattern as daily_country: days touched by newly loaded events are
    recomputed whole against the current users table. raw.users has no change
    timestamp, so plan changes reach older days only on a --full-refresh. -#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='event_date') }}

with events as (
    select * from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where event_date in (
        select distinct event_date
        from {{ ref('stg_events') }}
        where _loaded_at > (select max(_loaded_at_max) from {{ this }})
    )
    {% endif %}
)

select
    e.event_date,
    u.plan,
    count(*) as events,
    count(distinct e.user_id) as users,
    sum(e.amount) as revenue,
    max(e._loaded_at) as _loaded_at_max
from events as e
join {{ source('raw', 'users') }} as u on e.user_id = u.user_id
group by e.event_date, u.plan
