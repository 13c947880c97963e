{#-
    Macros of the dispatch queries (sql/dispatch_stage.sql), which import
    them: what a step of the staging writes twice, once per scope.
-#}

{#- The reason once the scoped floors and caps of `checks` are judged on
    `scope` (segment or channel): a failed one takes the place of no reason
    or of a reason the audience query applies after it, never of an earlier
    one (tasks/common/rules.py: AdmissionCheck). -#}
{% macro admission(reason, scope, kind, checks) -%}
{% if checks -%}
case
{%- for check_reason, measure, operator, replaces, count in checks %}
            when
                (
                    {{ reason }} is null
                    or {{ reason }} in (
                        {%- for later in replaces -%}
                            '{{ later }}'{{ ", " if not loop.last }}
                        {%- endfor -%}
                    )
                )
                and (
                    {%- for j in range(count) %}
                    {{ "or " if not loop.first }}(
                        {{ scope }} = :{{ kind }}_{{ measure }}_{{ j }}_scope
                        and {{ measure }} {{ operator }} :{{ kind }}_{{ measure }}_{{ j }}
                    )
                    {%- endfor %}
                )
                then '{{ check_reason }}'
{%- endfor %}
            else {{ reason }}
        end
{%- else -%}
{{ reason }}
{%- endif %}
{%- endmacro %}
