{#- Re-sessionise the whole history of every user with newly loaded events
    (a late event can split or merge sessions anywhere in it) and replace all
    of that user's sessions: delete+insert on user_id, not a merge on
    (user_id, session_number), so sessions that disappear are deleted too. -#}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='user_id') }}

with events as (
    select * from {{ ref('stg_events') }}
    {% if is_incremental() %}
    where user_id in (
        select distinct user_id
        from {{ ref('stg_events') }}
        where _loaded_at > (select max(_loaded_at_max) from {{ this }})
    )
    {% endif %}
),

ordered as (
    select
        user_id,
        event_id,
        ts,
        amount,
        _loaded_at,
        lag(ts) over (partition by user_id order by ts, event_id) as prev_ts
    from events
),

numbered as (
    select
        user_id,
        ts,
        amount,
        _loaded_at,
        cast(
            sum(case when prev_ts is null or ts - prev_ts > interval 30 minute then 1 else 0 end)
                over (partition by user_id order by ts, event_id rows between unbounded preceding and current row)
            as bigint
        ) as session_number
    from ordered
)

select
    user_id,
    session_number,
    min(ts) as session_start,
    max(ts) as session_end,
    count(*) as events,
    sum(amount) as revenue,
    max(_loaded_at) as _loaded_at_max
from numbered
group by user_id, session_number
