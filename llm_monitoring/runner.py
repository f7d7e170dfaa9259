"""`python -m llm_monitoring.runner [--watch] [--debug]`: the seed's runner, kept as an alias.

`python -m llm_monitoring.runner` is `llm-monitoring ingest`, `--watch` is `llm-monitoring watch`:
the same command-line code, running the same Dagster job as the sensor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Re-exported: the seed's users and scripts import these from here.
from llm_monitoring.ingest_runs import IngestFailed, RunOutcome, run_ingest, watch

__all__ = ["IngestFailed", "RunOutcome", "main", "run_ingest", "watch"]


def main(argv: Sequence[str] | None = None) -> int:
    from llm_monitoring import cli

    parser = argparse.ArgumentParser(prog="python -m llm_monitoring.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--watch", action="store_true", help="keep polling LOGS_DIR every POLL_SECONDS (llm-monitoring watch)")
    parser.add_argument("--debug", action="store_true", help="verbose logs (also DEBUG=1 or MONITORING_DEBUG=1)")
    args = parser.parse_args(argv)
    return cli.main([*(["--debug"] if args.debug else []), "watch" if args.watch else "ingest"])


if __name__ == "__main__":
    sys.exit(main())
