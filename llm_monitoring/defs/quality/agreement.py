"""The agreement gate: each LLM judge's current version agrees with the reviewers (Cohen's kappa at least
QUALITY_MIN_JUDGE_KAPPA, judged once it has QUALITY_MIN_AGREEMENT_PAIRS rated runs).

Agreement is taken over every run the version judged that reviewers rated, whatever its day:
ratings are few, and a kappa needs dozens of them to mean anything. Like the other gates it runs in
the ingest run and in quality_gates_job (which daily_aggregates_sensor requests after a judge run).
"""

import dagster as dg

from llm_monitoring.config import quality_thresholds
from llm_monitoring.core.agreement import Agreement, agreement_by_version, judge_agreement
from llm_monitoring.core.alerts import Failure
from llm_monitoring.core.judges import JudgeConfigError
from llm_monitoring.core.wording import plural
from llm_monitoring.defs import keys
from llm_monitoring.defs.metadata import markdown_table
from llm_monitoring.defs.quality.checks import AFTER_INGEST, raise_alert
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.judging import load_judges
from llm_monitoring.storage.judgements import verdict_reviewer_pairs


@dg.asset_check(
    asset=keys.JUDGE_AGREEMENT.asset_key,
    name=keys.JUDGE_AGREEMENT.name,
    additional_deps=AFTER_INGEST,
    description=(
        "Each LLM judge of JUDGES_FILE (its current version) agrees with the reviewers' ratings: Cohen's kappa at least "
        "QUALITY_MIN_JUDGE_KAPPA (default 0.4), judged once QUALITY_MIN_AGREEMENT_PAIRS (default 30) of its verdicts "
        "have a rating. WARN."
    ),
)
def judge_agreement_gate(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    limits = quality_thresholds()
    severity = dg.AssetCheckSeverity.WARN
    try:
        judges = load_judges()
    except JudgeConfigError as error:
        # A broken judges file stops the judges; say so here rather than fail the run the gate is in.
        return dg.AssetCheckResult(passed=False, severity=severity, description=f"judges file unusable: {error}")
    if not judges:
        return dg.AssetCheckResult(passed=True, severity=severity, description="no judges declared (JUDGES_FILE): nothing to judge")
    with database.open_for_step() as monitoring_db:
        found = {a.evaluator_version: a for a in agreement_by_version(verdict_reviewer_pairs(monitoring_db, [j.version for j in judges]))}
        verdicts = [
            judge_agreement(
                found.get(judge.version) or Agreement(judge.name, judge.version, 0, 0, 0, 0),
                limits.min_judge_kappa,
                limits.min_agreement_pairs,
            )
            for judge in judges
        ]
        low = [verdict for verdict in verdicts if verdict.low]
        failures = [Failure(verdict.agreement.evaluator_version, verdict.line, verdict.agreement.kappa) for verdict in low]
        alert = raise_alert(context, monitoring_db, keys.JUDGE_VERDICTS, severity, limits.min_judge_kappa, failures)
    judged = [verdict for verdict in verdicts if verdict.judged]
    if low:
        description = f"{plural(len(low), 'judge')} below kappa {limits.min_judge_kappa:.2f}: " + "; ".join(v.line for v in low)
    elif judged:
        description = f"{plural(len(judged), 'judge')} at or above kappa {limits.min_judge_kappa:.2f}"
    else:
        description = f"nothing to judge yet: no judge has {limits.min_agreement_pairs} verdicts on rated runs"
    rows = [
        {
            "judge": v.agreement.check_name,
            "version": v.agreement.evaluator_version,
            "pairs": v.agreement.pairs,
            "agreement": v.agreement.raw_agreement,
            "kappa": v.agreement.kappa,
            "verdict": "low" if v.low else ("ok" if v.judged else "not judged"),
        }
        for v in verdicts
    ]
    return dg.AssetCheckResult(
        passed=not low,
        severity=severity,
        description=description,
        metadata={
            "min_kappa": limits.min_judge_kappa,
            "min_pairs": limits.min_agreement_pairs,
            "judges_judged": len(judged),
            "judges_low": len(low),
            "lowest_kappa": min((v.agreement.kappa for v in judged if v.agreement.kappa is not None), default=None),
            "by_judge": dg.MetadataValue.md(markdown_table(rows, ("judge", "version", "pairs", "agreement", "kappa", "verdict"), limit=50)),
            "alert": alert,
        },
    )
