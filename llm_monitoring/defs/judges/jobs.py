"""The judge job: judge_verdicts and the daily_eval_summary of the same days, one run per range of days."""

import dagster as dg

from llm_monitoring.defs import keys

judge_runs_job = dg.define_asset_job(
    keys.JUDGE_JOB,
    # Without the gates, like the history jobs: daily_aggregates_sensor has them judge the rebuilt days
    # (the agreement gate among them) once this run has written them.
    selection=dg.AssetSelection.assets(keys.JUDGE_VERDICTS, keys.DAILY_EVAL_SUMMARY).without_checks(),
    description=(
        "Run the LLM judges of JUDGES_FILE over the runs of the selected days and rebuild their daily_eval_summary; "
        "requested by judge_new_runs_sensor for judges with on_ingest, and by `llm-monitoring judge run`."
    ),
    tags={keys.KIND_TAG: "judges"},
    # The calls run concurrently inside the judge step; a process per step would only add start-up time.
    executor_def=dg.in_process_executor,
)
