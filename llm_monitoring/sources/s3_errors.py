"""What an S3 call's failure means for the ingest, said in one line a user understands.

Failures of the store (no credentials, no bucket, access denied, the server unreachable or silent)
become SourceUnavailable: the pass fails, nothing is marked processed, the next pass or tick retries.
Failures of one object become what the local source raises for a file: FileNotFoundError for an
object deleted since it was listed, FileChanged for one overwritten since (a new ETag).
"""

from __future__ import annotations

from botocore import exceptions as boto

from llm_monitoring.database_url import mask_url
from llm_monitoring.sources.base import FileChanged, SourceUnavailable

_ACCESS_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AccountProblem",
    "403",
}
_GONE = {"NoSuchKey", "404", "NotFound"}
_CHANGED = {"PreconditionFailed", "412"}


def s3_failure(error: BaseException, doing: str, *, bucket: str, endpoint: str, timeout: float) -> BaseException:
    """The exception to raise for `error`, raised by boto3 while `doing` (e.g. "listing s3://b/p/")."""
    endpoint = mask_url(endpoint)
    if isinstance(error, boto.NoCredentialsError | boto.PartialCredentialsError | boto.CredentialRetrievalError):
        return SourceUnavailable(
            f"no AWS credentials for {doing}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE ({type(error).__name__})",
            transient=False,
        )
    if isinstance(error, boto.ProfileNotFound):
        return SourceUnavailable(f"AWS_PROFILE names no profile of the AWS config files, while {doing}: {error}", transient=False)
    if isinstance(error, boto.ConnectTimeoutError | boto.ReadTimeoutError):
        return SourceUnavailable(f"network timeout: {endpoint} did not answer within {timeout:g} s while {doing} (S3_TIMEOUT_SECONDS)")
    if isinstance(error, boto.EndpointConnectionError | boto.ConnectionClosedError):
        return SourceUnavailable(f"cannot reach {endpoint} while {doing}: the server is down or unreachable")
    if isinstance(error, boto.NoRegionError):
        return SourceUnavailable(f"no AWS region for {doing}: set AWS_REGION", transient=False)
    if isinstance(error, boto.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        if code == "NoSuchBucket":
            return SourceUnavailable(
                f"bucket {bucket} does not exist at {endpoint} (while {doing}); check LOGS_DIR and AWS_ENDPOINT_URL", transient=False
            )
        if code in _ACCESS_DENIED:
            return SourceUnavailable(
                f"access denied ({code}) while {doing} at {endpoint}: check the credentials and the bucket's policy", transient=False
            )
        if code in _GONE:
            return FileNotFoundError(f"gone since it was listed: {doing}")
        if code in _CHANGED:
            return FileChanged(f"overwritten since it was listed: {doing}")
        message = " ".join(str(details.get("Message") or "").split())
        return SourceUnavailable(f"{endpoint} answered {code or 'an error'} while {doing}{': ' + message if message else ''}")
    if isinstance(error, boto.BotoCoreError):
        return SourceUnavailable(f"S3 client error while {doing}: {' '.join(str(error).split())}")
    return error
