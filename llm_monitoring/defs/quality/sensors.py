"""The sensor that delivers the alerts of failed gates to ALERT_WEBHOOK_URL.

A failed gate records its alert in the monitoring database when it is evaluated (quality/checks.py);
this sensor sends what is due, so the run never waits for the webhook and a webhook that is down
is retried with backoff on later ticks (llm_monitoring/alerts.py). It launches no runs: each tick's
message says what it sent, what waits and why.
"""

import dagster as dg

from llm_monitoring.alerts import deliver_due, destination
from llm_monitoring.config import alert_settings
from llm_monitoring.defs import keys
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.storage.errors import DatabaseUnavailable


@dg.sensor(
    name=keys.ALERTS_SENSOR,
    minimum_interval_seconds=3,  # every loop of the daemon (about 5 s): see new_log_files_sensor
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Posts an alert to ALERT_WEBHOOK_URL (Slack-compatible JSON) for each gate and day that failed, and for "
        "quarantined files, once; retries with backoff while the webhook is down. Idle when ALERT_WEBHOOK_URL is unset."
    ),
)
def quality_alerts_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SkipReason:
    settings = alert_settings()
    if not settings.webhook_url:
        return dg.SkipReason("ALERT_WEBHOOK_URL is not set: alerts are neither recorded nor sent")
    webhook = destination(settings.webhook_url)
    try:
        with database.open() as monitoring_db:
            delivery = deliver_due(monitoring_db, settings)
    except DatabaseUnavailable as error:
        return dg.SkipReason(f"monitoring database unavailable, alerts wait: {error}")
    line = delivery.line(webhook)
    if delivery.sent:
        context.log.info(line)
    if delivery.failed:
        context.log.warning(line)
    return dg.SkipReason(line)
