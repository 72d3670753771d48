"""boto3 sessions for every AWS call: one place that reads ``--profile`` and ``--region``."""

from __future__ import annotations

from typing import Any

from logferry.errors import ConfigError


def session(profile: str | None = None, region: str | None = None) -> Any:
    """A ``boto3.session.Session`` with this profile and region (None: the AWS defaults).

    An unknown profile is a one-line ``ConfigError`` that names it and where profiles live.
    """
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session(profile_name=profile or None, region_name=region or None)
    except ProfileNotFound:
        raise ConfigError(
            f"unknown AWS profile {profile!r}: define it in ~/.aws/config or "
            "AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE"
        ) from None
