"""The definitions are autoloaded from the defs folder: every named asset, check, job and sensor is
there once, nothing else is, `dg` loads the same project, and the ingest run config reads back
what was built."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llm_monitoring.defs import keys

PACKAGE = Path(__file__).resolve().parents[1] / "llm_monitoring"
SENSORS = {keys.NEW_LOG_FILES_SENSOR, keys.AGGREGATES_SENSOR, keys.ALERTS_SENSOR, keys.JUDGE_SENSOR}


def _constants(kind: type) -> set:
    return {value for value in vars(keys).values() if isinstance(value, kind)}


def test_autoloaded_definitions_hold_exactly_the_named_objects():
    from llm_monitoring.definitions import defs

    assert isinstance(defs, dg.Definitions)
    repository = defs.get_repository_def()
    assert repository.asset_graph.get_all_asset_keys() == _constants(dg.AssetKey)
    assert repository.asset_graph.asset_check_keys == set(keys.GATES) == _constants(dg.AssetCheckKey)
    assert {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")} == {
        keys.INGEST_JOB,
        keys.REPRICE_JOB,
        keys.REEVALUATE_JOB,
        keys.AGGREGATES_JOB,
        keys.GATES_JOB,
        keys.RETENTION_JOB,
        keys.JUDGE_JOB,
    }
    assert {sensor.name for sensor in repository.sensor_defs} == SENSORS
    assert {schedule.name for schedule in repository.schedule_defs} == {keys.RETENTION_SCHEDULE}
    assert set(repository.get_top_level_resources()) == {"log_source", "database"}
    # The ingest step and the judge step carry the op names their run configs address.
    assert keys.INGEST_OP in defs.resolve_job_def(keys.INGEST_JOB).graph.node_dict
    assert keys.JUDGE_OP in defs.resolve_job_def(keys.JUDGE_JOB).graph.node_dict


@pytest.mark.parametrize(
    ("files", "settled_only"),
    [
        (["run-1.json", "run 2.JSON"], False),
        (["caf\udce9.json", "back\\slash.json", "tab\there.json"], True),  # not UTF-8, a backslash, a control character
        ([], False),
    ],
)
def test_ingest_run_config_reads_back_the_names_it_was_built_with(files: list[str], settled_only: bool):
    from llm_monitoring.file_names import name_from_text

    run_config = keys.ingest_run_config(files, settled_only=settled_only)
    texts = keys.ingest_run_files(run_config)
    assert [name_from_text(text) for text in texts] == files
    assert all(text.isprintable() for text in texts)
    assert run_config["ops"][keys.INGEST_OP]["config"].get("settled_only", False) is settled_only


@pytest.mark.parametrize("run_config", [None, {}, {"ops": {}}, {"ops": {"other_op": {"config": {"files": ["x.json"]}}}}, {"loggers": {}}])
def test_run_config_of_another_job_asks_for_no_ingest_files(run_config):
    assert keys.ingest_run_files(run_config) == []


def test_judge_run_config_reads_back_the_id_ranges_it_was_built_with():
    run_config = keys.judge_run_config(["helpfulness"], [(3, 9), (12, 12)])
    config = run_config["ops"][keys.JUDGE_OP]["config"]
    assert config["judges"] == ["helpfulness"] and keys.parse_id_ranges(config["id_ranges"]) == [(3, 9), (12, 12)]
    assert keys.judge_run_config() == {}
    with pytest.raises(ValueError, match="not a range of run ids"):
        keys.parse_id_ranges(["9-3"])


def test_asset_keys_are_written_in_keys_module_only():
    """An asset key spelled as a string outside defs/keys.py is a second home for one fact."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "defs" / "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) in {"AssetKey", "AssetCheckKey"}
                and any(isinstance(arg, ast.Constant) for arg in node.args)
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


@pytest.mark.e2e
def test_dg_lists_and_checks_the_autoloaded_definitions(tmp_path: Path):
    root = PACKAGE.parent
    dg_command = Path(sys.executable).parent / "dg"
    # A Dagster home of the test's own: without one, dg would keep its storage in the repository's .dagster_home.
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "DAGSTER_HOME": str(home)}
    checked = subprocess.run([str(dg_command), "check", "defs"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = subprocess.run([str(dg_command), "list", "defs", "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    found = json.loads(listed.stdout)
    assert {asset["asset_key"] for asset in found["assets"]} == {key.to_user_string() for key in _constants(dg.AssetKey)}
    assert len(found["asset_checks"]) == len(keys.GATES)
    assert {sensor["name"] for sensor in found["sensors"]} == SENSORS
