"""S3-compatible buckets: AWS S3, IBM Cloud Object Storage (HMAC keys), MinIO."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from logferry.errors import ConfigError, SourceError
from logferry.records import ObjectInfo
from logferry.redact import redact, redact_url
from logferry.registry import Component
from logferry.sources.base import READ_CHUNK, BucketSource

# Names the original IBM job and IBM's docs use for HMAC credentials, most specific first.
COS_KEY_ID_VARS = ("COS_HMAC_ACCESS_KEY_ID", "COS_ACCESS_KEY_ID")
COS_SECRET_VARS = ("COS_HMAC_SECRET_ACCESS_KEY", "COS_SECRET_ACCESS_KEY")


def _botocore() -> ModuleType:
    """``botocore.exceptions``, imported when first needed (discovery must not load boto3)."""
    import botocore.exceptions

    return botocore.exceptions


def _errors() -> tuple[type[Exception], ...]:
    """What boto3 raises: the exceptions worth turning into a ``SourceError``."""
    return (_botocore().BotoCoreError, _botocore().ClientError)


def _client_error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


class S3Source(BucketSource):
    """Objects under ``prefix`` in ``bucket``, read with boto3 as streams."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        cos: bool = False,
        profile: str | None = None,
        region: str | None = None,
        verify: bool = True,
    ) -> None:
        if not bucket:
            raise ConfigError(
                "no bucket given: use s3://BUCKET/PREFIX (or set COS_BUCKET for cos://)"
            )
        self.bucket = bucket
        self.prefix = prefix
        scheme = "cos" if cos else "s3"
        self.id = f"s3://{bucket}"
        self.display = f"{scheme}://{bucket}/{prefix}"
        kwargs: dict[str, Any] = {}
        if cos:
            endpoint_url = endpoint_url or os.environ.get("COS_ENDPOINT")
            key_id, secret = _first_env(COS_KEY_ID_VARS), _first_env(COS_SECRET_VARS)
            if key_id and secret:
                kwargs.update(aws_access_key_id=key_id, aws_secret_access_key=secret)
        if endpoint_url and "://" not in endpoint_url:
            # COS_ENDPOINT is usually a bare host name, e.g. s3.us-south.cloud-object-storage.appdomain.cloud
            endpoint_url = f"https://{endpoint_url}"
        self.endpoint_url = endpoint_url
        from botocore.config import Config

        from logferry.aws import session

        config = Config(
            retries={"mode": "standard", "total_max_attempts": 10},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        try:
            # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself.
            self.client = session(profile, region).client(
                "s3", endpoint_url=endpoint_url, config=config, verify=verify, **kwargs
            )
        except (_botocore().BotoCoreError, ValueError) as exc:
            raise ConfigError(redact(f"cannot create S3 client: {exc}")) from None
        self.cos = cos
        # Without an endpoint boto3 goes to AWS, which answers with AWS's credential hints.
        if cos and ".amazonaws.com" in (urlsplit(self.client.meta.endpoint_url).hostname or ""):
            raise ConfigError(
                f"{self.display}: no IBM COS endpoint; set COS_ENDPOINT (e.g. "
                "s3.us-south.cloud-object-storage.appdomain.cloud) or --endpoint, and the HMAC "
                "keys in COS_HMAC_ACCESS_KEY_ID/COS_HMAC_SECRET_ACCESS_KEY"
            )

    def _error(self, exc: Exception, what: str) -> SourceError:
        error = self._classify(exc, what)
        # botocore echoes the endpoint URL (with any user:password in it) in its messages.
        return SourceError(redact(str(error)), transient=error.transient)

    def _classify(self, exc: Exception, what: str) -> SourceError:
        botocore_exceptions = _botocore()
        if isinstance(exc, botocore_exceptions.ClientError):
            code = _client_error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return SourceError(f"{what}: object does not exist (deleted after listing?)")
            if code == "NoSuchBucket":
                return SourceError(f"{what}: bucket {self.bucket} does not exist")
            if code in ("SlowDown", "503", "500", "InternalError", "ServiceUnavailable"):
                # Still throttled after botocore's own retries: worth a later pass.
                message = exc.response.get("Error", {}).get("Message", "")
                return SourceError(f"{what}: {code}: {message}".rstrip(": "), transient=True)
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return SourceError(f"{what}: access denied ({code}); check the credentials")
            return SourceError(
                f"{what}: {code or 'error'}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(
                    ": "
                )
            )
        if isinstance(exc, botocore_exceptions.NoCredentialsError):
            names = (
                "COS_HMAC_ACCESS_KEY_ID/COS_HMAC_SECRET_ACCESS_KEY"
                if self.cos
                else "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
            return SourceError(f"{what}: no credentials; set {names}")
        # Connection trouble, timeouts: worth another attempt later in the run.
        return SourceError(f"{what}: {type(exc).__name__}: {exc}", transient=True)

    def list_pages(self) -> Iterator[list[ObjectInfo]]:
        """Yield one page per ListObjectsV2 call."""
        return self.list_from(self.prefix)

    def list_from(
        self, prefix: str, start_after: str = "", *, direct: bool = False
    ) -> Iterator[list[ObjectInfo]]:
        """Pages of the objects under ``prefix`` after ``start_after``, in key order.

        ``direct``: only the objects right under ``prefix`` (up to the next ``/``), not those
        in deeper "folders" (which :meth:`child_prefixes` names).
        """
        paginator = self.client.get_paginator("list_objects_v2")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            params["StartAfter"] = start_after
        if direct:
            params["Delimiter"] = "/"
        try:
            for page in paginator.paginate(**params):
                items = [
                    ObjectInfo(
                        o["Key"],
                        o.get("Size", 0),
                        o.get("ETag", "").strip('"'),
                        int(o["LastModified"].timestamp() * 1000),
                    )
                    for o in page.get("Contents", [])
                    if not o["Key"].endswith("/")  # folder markers hold no logs
                ]
                if items:
                    yield items
        except _errors() as exc:
            raise ConfigError(str(self._error(exc, f"cannot list {self.display}"))) from None

    def child_prefixes(self, prefix: str) -> Iterator[str]:
        """The "folders" right under ``prefix`` (common prefixes up to the next ``/``)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    yield common["Prefix"]
        except _errors() as exc:
            raise ConfigError(str(self._error(exc, f"cannot list {self.display}"))) from None

    def head(self, key: str) -> ObjectInfo:
        """HEAD one object."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except _errors() as exc:
            raise self._error(exc, key) from None
        return ObjectInfo(
            key,
            r.get("ContentLength", 0),
            r.get("ETag", "").strip('"'),
            int(r["LastModified"].timestamp() * 1000),
        )

    def open(self, obj: ObjectInfo, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """GET the object and stream its body."""
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=obj.key)
        except _errors() as exc:
            raise self._error(exc, obj.key) from None
        return self._stream(r["Body"], obj.key, chunk_size)

    def _stream(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        except (_botocore().BotoCoreError, OSError) as exc:
            raise SourceError(
                redact(f"{key}: reading failed: {type(exc).__name__}: {exc}"), transient=True
            ) from None
        finally:
            body.close()

    def delete(self, keys: list[str]) -> int:
        """DeleteObjects in batches of 1000."""
        n = 0
        for i in range(0, len(keys), 1000):
            part = keys[i : i + 1000]
            try:
                r = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in part], "Quiet": True},
                )
            except _errors() as exc:
                raise self._error(exc, f"delete from {self.display}") from None
            errors = r.get("Errors", [])
            if errors:
                first = errors[0]
                raise SourceError(
                    f"could not delete {len(errors)} objects, e.g. {first.get('Key')}: "
                    f"{first.get('Code')}"
                )
            n += len(part)
        return n

    def close(self) -> None:
        """Close the HTTP pool."""
        self.client.close()


class S3Options(BaseModel):
    """Where the S3-compatible API is and whether to verify its certificate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = None
    verify: bool = True
    #: AWS profile and region (None: the AWS defaults: AWS_PROFILE, AWS_REGION, ~/.aws/config).
    profile: str | None = None
    region: str | None = None


def parse_bucket_url(url: str) -> tuple[bool, str, str]:
    """``(cos, bucket, prefix)`` of ``s3://BUCKET/PREFIX`` or ``cos://BUCKET/PREFIX``.

    ``cos:///`` takes the bucket (and prefix) from ``COS_BUCKET`` / ``COS_PREFIX``.
    """
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigError(
            "credentials in a source URL are not accepted: use AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, a profile, or COS_HMAC_* variables"
        )
    cos = parts.scheme.lower() == "cos"
    bucket = parts.netloc or (os.environ.get("COS_BUCKET", "") if cos else "")
    prefix = parts.path.lstrip("/")
    if cos and not parts.netloc and not prefix:
        prefix = os.environ.get("COS_PREFIX", "")
    if not bucket:
        raise ConfigError(
            f"no bucket in {redact_url(url)!r}: use s3://BUCKET/PREFIX "
            "(or set COS_BUCKET for cos://)"
        )
    return cos, bucket, prefix


def _check(url: str, options: S3Options) -> None:
    parse_bucket_url(url)


def _open(url: str, options: S3Options) -> S3Source:
    cos, bucket, prefix = parse_bucket_url(url)
    return S3Source(
        bucket,
        prefix,
        endpoint_url=options.endpoint_url,
        cos=cos,
        verify=options.verify,
        profile=options.profile,
        region=options.region,
    )


COMPONENT = Component(
    name="s3",
    kind="bucket",
    schemes=("s3", "cos"),
    options=S3Options,
    check=_check,
    open=_open,
    usage="s3://BUCKET/PREFIX, cos://BUCKET/PREFIX",
    summary="objects of an S3-compatible bucket (AWS S3, IBM COS, MinIO)",
    preload=("logferry.aws", "boto3", "boto3.s3.inject", "botocore.config"),
)
