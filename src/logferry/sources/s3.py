"""S3-compatible buckets: AWS S3, IBM Cloud Object Storage (HMAC keys), MinIO."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from logferry.errors import ConfigError, SourceError
from logferry.records import ObjectInfo
from logferry.sources.base import READ_CHUNK, BucketSource

# Names the original IBM job and IBM's docs use for HMAC credentials, most specific first.
COS_KEY_ID_VARS = ("COS_HMAC_ACCESS_KEY_ID", "COS_ACCESS_KEY_ID")
COS_SECRET_VARS = ("COS_HMAC_SECRET_ACCESS_KEY", "COS_SECRET_ACCESS_KEY")


def _client_error_code(exc: botocore.exceptions.ClientError) -> str:
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
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 10},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself.
            self.client = session.client(
                "s3", endpoint_url=endpoint_url, config=config, verify=verify, **kwargs
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise ConfigError(f"cannot create S3 client: {exc}") from None

    def _error(self, exc: Exception, what: str) -> SourceError:
        if isinstance(exc, botocore.exceptions.ClientError):
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
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return SourceError(
                f"{what}: no credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        # Connection trouble, timeouts: worth another attempt later in the run.
        return SourceError(f"{what}: {type(exc).__name__}: {exc}", transient=True)

    def list_pages(self) -> Iterator[list[ObjectInfo]]:
        """Yield one page per ListObjectsV2 call."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
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
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise ConfigError(str(self._error(exc, f"cannot list {self.display}"))) from None

    def head(self, key: str) -> ObjectInfo:
        """HEAD one object."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
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
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, obj.key) from None
        return self._stream(r["Body"], obj.key, chunk_size)

    def _stream(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise SourceError(
                f"{key}: reading failed: {type(exc).__name__}: {exc}", transient=True
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
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
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
