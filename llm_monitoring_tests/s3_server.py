"""A real S3 API server on 127.0.0.1 for tests and benchmarks: moto's standalone server.

`MotoServer` starts `moto_server` (installed with the dev group's `moto[server]`) in its own process
group on a free port, keeps its request log (one line per HTTP request, which the tests read to count
GETs), and can pause (SIGSTOP: the server stops answering, its data kept) and resume it.

    python -m llm_monitoring_tests.s3_server --port 5000 --populate agent-logs/prod/runs/ --count 100000

runs the same server with objects already in its store, written straight into moto's backend: uploading
100,000 objects through the API would take minutes, this takes seconds (benchmarks and the sensor test).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from llm_monitoring_tests.processes import free_port, stop_group, wait_until

# Credentials moto accepts (any non-empty pair): the variables the S3 source reads.
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)

# werkzeug's line per request; answers other than 200 are wrapped in terminal colour codes.
_REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+')


class MotoServer:
    """moto_server on 127.0.0.1; `args` after the port, e.g. the populate options of this module."""

    def __init__(self, log_path: Path, *, populate: str = "", count: int = 0, size: int = 256, samples: bool = False) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.endpoint = f"http://127.0.0.1:{self.port}"
        if populate:
            command = [sys.executable, "-m", "llm_monitoring_tests.s3_server", "--port", str(self.port)]
            command += ["--populate", populate, "--count", str(count), "--size", str(size)] + (["--samples"] if samples else [])
        else:
            command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_until(self._answers, 60, f"moto_server on port {self.port}", interval=0.1)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {self.process.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request the server logged so far."""
        text = self.log_path.read_text(errors="replace")
        return [(match["method"], match["path"]) for match in _REQUEST_LINE.finditer(text)]

    def object_gets(self, bucket: str) -> list[str]:
        """Paths of the GETs of objects (not listings) in `bucket`."""
        return [path for method, path in self.requests() if method == "GET" and path.startswith(f"/{bucket}/") and "?" not in path]

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        stop_group(self.process, grace=5)
        self._log.close()


def populate_backend(bucket: str, prefix: str, count: int, size: int) -> None:
    """`count` objects named like the sample writer's logs (time-ordered) straight into moto's backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    for index in range(count):
        backend.put_object(bucket, populated_key(prefix, index), populated_body(index, size))


def populate_samples(bucket: str, prefix: str, count: int) -> None:
    """`count` realistic run logs of the project's sample writer (5, 30 and 90 KB) straight into moto's backend."""
    import tempfile

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from llm_monitoring.samples import write_sample_logs

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if bucket not in backend.buckets:
        backend.create_bucket(bucket, "us-east-1")
    with tempfile.TemporaryDirectory() as folder:
        for path in write_sample_logs(folder, count, seed=7, sizes_kb=(5, 30, 90)):
            backend.put_object(bucket, prefix + path.name, path.read_bytes())


def populated_key(prefix: str, index: int) -> str:
    return f"{prefix}agent_{index:08d}.json"


def populated_body(index: int, size: int) -> bytes:
    """The bytes of populated object `index`: its ETag is their MD5, as for any single-part upload."""
    return (b'{"messages": [], "n": %d}' % index).ljust(size, b" ")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--populate", default="", help="bucket/prefix/ to fill before serving")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", action="store_true", help="sample run logs instead of small placeholder objects")
    args = parser.parse_args(argv)
    if args.populate:
        bucket, _, prefix = args.populate.partition("/")
        if args.samples:
            populate_samples(bucket, prefix, args.count)
        else:
            populate_backend(bucket, prefix, args.count, args.size)
        print(f"populated {args.count} objects under s3://{args.populate}", flush=True)
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
