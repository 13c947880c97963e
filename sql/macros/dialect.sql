{#-
    The dialect macros: the only place where SQLite and PostgreSQL differ.

    Rendered per dialect by tasks/sqlfiles.py (variable `dialect`: "sqlite" or
    "postgresql", as SQLAlchemy names them) and by sqlfluff's jinja templater
    (pyproject: [tool.sqlfluff.templater.jinja], which lints the PostgreSQL
    rendering). Arguments are SQL expressions as text; values always arrive as
    bind parameters (":attribution_days"), never formatted into the SQL.

    Timestamps are naive UTC. SQLite stores them as text
    'YYYY-MM-DD HH:MM:SS.ffffff' and compares them as text, so every expression
    that yields a timestamp must yield exactly that format: SQLite's own
    datetime()/strftime('%f') drop or round the microseconds, so add_days()
    shifts only the first 19 characters (whole days never change the time of
    day or the fraction in UTC) and appends the stored fraction unchanged.
-#}

{#- timestamp + days (an integer expression, may be negative), exact to the
    microsecond on both back ends. -#}
{% macro add_days(timestamp, days) -%}
{% if dialect == "sqlite" -%}
(strftime('%Y-%m-%d %H:%M:%S', substr({{ timestamp }}, 1, 19), ({{ days }}) || ' days') || substr({{ timestamp }}, 20))
{%- else -%}
({{ timestamp }} + ({{ days }}) * interval '1 day')
{%- endif %}
{%- endmacro %}

{#- The UTC calendar date of a timestamp, comparable with a date column such as
    repayments.as_of ('YYYY-MM-DD' text on SQLite). -#}
{% macro to_date(timestamp) -%}
{% if dialect == "sqlite" -%}
date({{ timestamp }})
{%- else -%}
cast({{ timestamp }} as date)
{%- endif %}
{%- endmacro %}

{#- The start of a timestamp's UTC hour, and of the hour after it (the
    experiment store's buckets), in the stored format on SQLite. -#}
{% macro hour_start(timestamp) -%}
{% if dialect == "sqlite" -%}
(substr({{ timestamp }}, 1, 13) || ':00:00.000000')
{%- else -%}
date_trunc('hour', {{ timestamp }})
{%- endif %}
{%- endmacro %}

{% macro next_hour(timestamp) -%}
{% if dialect == "sqlite" -%}
(strftime('%Y-%m-%d %H:00:00', substr({{ timestamp }}, 1, 19), '+1 hours') || '.000000')
{%- else -%}
(date_trunc('hour', {{ timestamp }}) + interval '1 hour')
{%- endif %}
{%- endmacro %}

{#- `in` a list bound as one expanding parameter (SQLAlchemy writes the
    parentheses at run time). sqlfluff cannot parse `in :name`, so the lint
    rendering (context `lint`, pyproject) shows the parenthesised form. -#}
{% macro in_list(parameter) -%}
{% if lint is defined and lint -%}
in ({{ parameter }})
{%- else -%}
in {{ parameter }}
{%- endif %}
{%- endmacro %}

{#- SQLite's planner, without ANALYZE statistics, probes a table by its primary
    key's index and then reads the row, even where another index holds every
    column the query needs; `indexed by` names that covering index (the one
    created in migration 0004). PostgreSQL plans from its own statistics: no
    hint. -#}
{% macro index_hint(index) -%}
{% if dialect == "sqlite" and not (lint is defined and lint) -%}
indexed by {{ index }}
{%- endif %}
{%- endmacro %}

{#- How many of a hash's ascending cuts the hash of `key` reaches: the first
    60 bits of sha256('<salt>:' || key) as a number, against the cuts
    (tasks/do/assignment.py: hash_bits, hash_binds). `role` names the hash
    (window, channel, variant). PostgreSQL computes it from the binds
    :<role>_salt ('<salt>:') and :<role>_cuts (an array literal '{c1,c2}');
    SQLite calls the function dispatch registers on its connection for that
    role, with the salt and the cuts bound in. -#}
{% macro bucket(role, key) -%}
{% if dialect == "sqlite" -%}
pdca_bucket_{{ role }}({{ key }})
{%- else -%}
width_bucket(cast(cast('x' || left(encode(sha256(convert_to(:{{ role }}_salt || {{ key }}, 'UTF8')), 'hex'), 15) as bit(60)) as bigint), cast(:{{ role }}_cuts as bigint []))
{%- endif %}
{%- endmacro %}

{#- Keeps a CTE from being flattened into the query that reads it, so that a
    column it computes and the next step uses several times is computed once
    per row (SQLite honours `offset` only after a `limit`; PostgreSQL plans
    the CTE the same either way). -#}
{% macro fence() -%}
{% if dialect == "sqlite" -%}
limit -1 offset 0
{%- else -%}
offset 0
{%- endif %}
{%- endmacro %}
