"""``logferry deploy aws``: upload the Lambda zip and create or update the CloudFormation stack.

The stack is ``deploy/aws/template.yaml``: bucket notifications to an SQS queue, the Lambda
function reading it (partial batch responses), a dead-letter queue and its alarm. The code
zip goes to a bucket of the account (``logferry-deploy-ACCOUNT-REGION`` unless named) under a
key that is its hash, so an unchanged package does not redeploy the function.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from logferry.config import PipelineConfig
from logferry.errors import ConfigError, LogferryError
from logferry.packaging import ZIP_EPOCH

#: Where ``-c FILE`` goes inside the zip, and so the function's ``LOGFERRY_CONFIG``.
PIPELINE_IN_ZIP = "logferry-pipeline.yaml"
LAMBDA_TASK_ROOT = "/var/task"
#: Seconds between status polls, and at most how long to wait for the stack.
POLL_SECONDS = 5
WAIT_SECONDS = 3600


class DeployError(LogferryError):
    """AWS refused a step, or the stack did not reach a complete state (exit 1)."""


@dataclass
class Deployment:
    """What ``deploy`` did."""

    stack: str
    action: str  # created, updated, unchanged
    code: str  # s3://BUCKET/KEY of the zip
    outputs: dict[str, str] = field(default_factory=dict)


def bucket_of(config: PipelineConfig) -> tuple[str, str]:
    """The one ``s3://BUCKET/PREFIX`` source of ``config``: its bucket and prefix."""
    found = {
        (parts.netloc, parts.path.lstrip("/"))
        for parts in (urlsplit(s.url) for s in config.sources.values())
        if parts.scheme == "s3" and parts.netloc
    }
    if len(found) != 1:
        what = "no s3:// source" if not found else f"{len(found)} s3:// sources"
        raise ConfigError(f"the pipeline has {what}: name the bucket to announce with --bucket")
    return found.pop()


def with_pipeline(zip_path: Path, pipeline: Path, workdir: Path) -> Path:
    """A copy of ``zip_path`` with ``pipeline`` added as :data:`PIPELINE_IN_ZIP`."""
    out = workdir / zip_path.name
    shutil.copyfile(zip_path, out)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as zf:
        if PIPELINE_IN_ZIP in zf.namelist():
            raise ConfigError(f"{zip_path} already holds a {PIPELINE_IN_ZIP}")
        info = zipfile.ZipInfo(PIPELINE_IN_ZIP, ZIP_EPOCH)
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, pipeline.read_bytes())
    return out


def _client_error(exc: Exception) -> str:
    if type(exc).__name__ == "ResponseParserError":  # its message quotes the whole body
        return "the endpoint's answer is not an AWS API response (an error page?)"
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Message") or error.get("Code") or exc)


class AwsDeployer:
    """The steps of a deployment, each one AWS call or a few, each failure one line."""

    def __init__(
        self,
        *,
        region: str | None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
        from botocore.parsers import ResponseParserError

        try:
            session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound as exc:
            raise ConfigError(str(exc)) from None
        if not session.region_name:
            raise ConfigError("no AWS region: pass --region or set AWS_REGION")
        self.region = session.region_name
        # A server answering garbage (an emulator's 500 page) is a one-line error too.
        self.errors: tuple[type[Exception], ...] = (ClientError, BotoCoreError, ResponseParserError)
        self._client_error_type = ClientError
        kwargs: dict[str, Any] = {"region_name": self.region}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        self.s3 = session.client("s3", **kwargs)
        self.cfn = session.client("cloudformation", **kwargs)
        self.sts = session.client("sts", **kwargs)
        self.say = say

    def _call(self, what: str, func: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return func(**kwargs)
        except self.errors as exc:
            raise DeployError(f"{what}: {_client_error(exc)}") from None

    def code_bucket(self, name: str | None) -> str:
        """``name``, or the account's ``logferry-deploy-ACCOUNT-REGION``, created if missing."""
        if name is None:
            account = self._call("who am I (sts)", self.sts.get_caller_identity)["Account"]
            name = f"logferry-deploy-{account}-{self.region}"
        try:
            self.s3.head_bucket(Bucket=name)
            return name
        except self._client_error_type as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise DeployError(f"code bucket {name}: {_client_error(exc)}") from None
        except self.errors as exc:
            raise DeployError(f"code bucket {name}: {_client_error(exc)}") from None
        create: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._call(f"create the code bucket {name}", self.s3.create_bucket, **create)
        self.say(f"created the code bucket {name}")
        return name

    def upload(self, zip_path: Path, bucket: str, stack: str) -> str:
        """Upload the zip under a key named by its hash (once); return the key."""
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:20]
        key = f"logferry/{stack}/{digest}.zip"
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            self.say(f"code s3://{bucket}/{key} is already uploaded")
            return key
        except self.errors:
            pass
        self._call(f"upload to s3://{bucket}/{key}", self.s3.upload_file,
                   Filename=str(zip_path), Bucket=bucket, Key=key)  # fmt: skip
        self.say(f"uploaded s3://{bucket}/{key}")
        return key

    def _stack(self, stack: str) -> dict[str, Any] | None:
        try:
            return dict(self.cfn.describe_stacks(StackName=stack)["Stacks"][0])
        except self._client_error_type as exc:
            if "does not exist" in _client_error(exc):
                return None
            raise DeployError(f"stack {stack}: {_client_error(exc)}") from None
        except self.errors as exc:
            raise DeployError(f"stack {stack}: {_client_error(exc)}") from None

    def apply(self, stack: str, template: str, parameters: Mapping[str, str]) -> str:
        """Create the stack or update it; wait; return created, updated or unchanged."""
        current = self._stack(stack)
        status = current["StackStatus"] if current else None
        if status == "ROLLBACK_COMPLETE":
            raise DeployError(
                f"stack {stack} is in ROLLBACK_COMPLETE (its creation failed): delete it "
                f"(aws cloudformation delete-stack --stack-name {stack}) and deploy again"
            )
        if status and status.endswith("_IN_PROGRESS"):
            raise DeployError(f"stack {stack} is busy ({status}): wait, then deploy again")
        params: list[dict[str, Any]] = [
            {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
        ]
        common = {"StackName": stack, "TemplateBody": template, "Capabilities": ["CAPABILITY_IAM"]}
        if current is None:
            self.say(f"creating stack {stack} in {self.region}")
            self._call(f"create stack {stack}", self.cfn.create_stack,
                       Parameters=params, **common)  # fmt: skip
            self._wait(stack, "stack_create_complete")
            return "created"
        # Parameters not given keep their values (the ledger URL, say). Passed as values where
        # AWS shows them: UsePreviousValue only for NoEcho ones (shown as ****), since emulators
        # only know the previous value of the parameters given explicitly.
        for prev in current.get("Parameters", []):
            key = prev["ParameterKey"]
            if key in parameters or f"\n  {key}:" not in template:
                continue
            value = prev.get("ParameterValue", "")
            keep = {"UsePreviousValue": True} if value == "****" else {"ParameterValue": value}
            params.append({"ParameterKey": key, **keep})
        self.say(f"updating stack {stack} in {self.region}")
        try:
            self.cfn.update_stack(Parameters=params, **common)
        except self.errors as exc:
            if "No updates are to be performed" in _client_error(exc):
                return "unchanged"
            raise DeployError(f"update stack {stack}: {_client_error(exc)}") from None
        self._wait(stack, "stack_update_complete")
        return "updated"

    def _wait(self, stack: str, waiter: str) -> None:
        from botocore.exceptions import WaiterError

        config = {"Delay": POLL_SECONDS, "MaxAttempts": WAIT_SECONDS // POLL_SECONDS}
        try:
            self.cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig=config)
        except WaiterError:
            raise DeployError(f"stack {stack}: {self.failure(stack)}") from None

    def failure(self, stack: str) -> str:
        """The stack's status and the first failed resource's reason, in one line."""
        current = self._stack(stack) or {}
        status = current.get("StackStatus", "gone")
        try:
            events = self.cfn.describe_stack_events(StackName=stack)["StackEvents"]
        except self.errors:
            events = []
        failed = [
            e for e in reversed(events) if str(e.get("ResourceStatus", "")).endswith("FAILED")
        ]
        why = next((e for e in failed if e.get("ResourceStatusReason")), None)
        if why is None:
            return str(status)
        return f"{status}: {why['LogicalResourceId']}: {why['ResourceStatusReason']}"

    def outputs(self, stack: str) -> dict[str, str]:
        """The stack's outputs, by key."""
        current = self._stack(stack) or {}
        return {o["OutputKey"]: o["OutputValue"] for o in current.get("Outputs", [])}


def deploy(
    deployer: AwsDeployer,
    *,
    stack: str,
    zip_path: Path,
    template: Path,
    parameters: Mapping[str, str],
    pipeline: Path | None = None,
    code_bucket: str | None = None,
) -> Deployment:
    """Upload ``zip_path`` (with ``pipeline`` inside), then create or update ``stack``."""
    params = dict(parameters)
    with tempfile.TemporaryDirectory(prefix="logferry-deploy-") as tmp:
        if pipeline is not None:
            zip_path = with_pipeline(zip_path, pipeline, Path(tmp))
            params.setdefault("PipelineFile", f"{LAMBDA_TASK_ROOT}/{PIPELINE_IN_ZIP}")
        bucket = deployer.code_bucket(code_bucket)
        key = deployer.upload(zip_path, bucket, stack)
    params.update(CodeBucket=bucket, CodeKey=key)
    action = deployer.apply(stack, template.read_text(), params)
    return Deployment(stack, action, f"s3://{bucket}/{key}", deployer.outputs(stack))
