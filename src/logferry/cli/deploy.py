"""``logferry deploy aws``: build, upload and deploy the Lambda stack in one command."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from logferry import packaging
from logferry.cli.common import emit_json, err, handle_errors, human_bytes
from logferry.cli.package import resolve_needs
from logferry.config import load_pipeline
from logferry.errors import ConfigError


@click.group()
def deploy() -> None:
    """Deploy logferry: AWS Lambda fed by bucket notifications."""


def _parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isalnum():
            raise ConfigError(f"--parameter takes KEY=VALUE (a template parameter), got {pair!r}")
        params[key] = value
    return params


@deploy.command("aws")
@click.option(
    "-c",
    "--config",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The pipeline file the function runs (it goes into the zip).",
)
@click.option("--stack", required=True, help="The CloudFormation stack to create or update.")
@click.option(
    "--bucket", help="The bucket whose new objects are shipped (default: the s3:// source's)."
)
@click.option(
    "--existing-bucket",
    is_flag=True,
    help="The bucket exists: do not create it (add its notification yourself, see docs).",
)
@click.option("--ledger", envvar="LOGFERRY_LEDGER", metavar="URL", help="LedgerUrl (kept secret).")
@click.option(
    "--arch",
    type=click.Choice(sorted(packaging.ARCH_PLATFORM)),
    default="x86_64",
    show_default=True,
)
@click.option(
    "-p",
    "--parameter",
    "parameters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Another template parameter, e.g. IngestionKeySecret=logferry/key (repeatable).",
)
@click.option(
    "--zip",
    "zip_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Deploy this zip (logferry package lambda) instead of building one.",
)
@click.option("--code-bucket", help="Where the zip goes (default: logferry-deploy-ACCOUNT-REGION).")
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The CloudFormation template (default: deploy/aws/template.yaml of the checkout).",
)
@click.option(
    "--region", envvar="AWS_REGION", help="AWS region (default: AWS_REGION, the profile's)."
)
@click.option("--profile", envvar="AWS_PROFILE", help="AWS profile (default: AWS_PROFILE).")
@click.option("--endpoint-url", help="Another AWS endpoint (a local emulator such as moto).")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as JSON.")
@handle_errors
def aws(
    config: Path,
    stack: str,
    bucket: str | None,
    existing_bucket: bool,
    ledger: str | None,
    arch: str,
    parameters: tuple[str, ...],
    zip_path: Path | None,
    code_bucket: str | None,
    template: Path | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    as_json: bool,
) -> None:
    """Build the Lambda zip for the pipeline in CONFIG, upload it, create or update the stack
    (bucket notifications -> SQS -> Lambda, dead-letter queue, alarm), wait, print its outputs.
    """
    from logferry.serverless.aws_deploy import AwsDeployer, bucket_of
    from logferry.serverless.aws_deploy import deploy as run_deploy

    pipeline = load_pipeline(str(config))
    params = {"Architecture": arch}
    if bucket is None:
        bucket, prefix = bucket_of(pipeline)
        if prefix:
            params["KeyPrefix"] = prefix
    params["BucketName"] = bucket
    if existing_bucket:
        params["CreateBucket"] = "false"
    if ledger:
        params["LedgerUrl"] = ledger
    params.update(_parameters(parameters))
    template = template or packaging.deploy_file("aws/template.yaml")
    deployer = AwsDeployer(region=region, endpoint_url=endpoint_url, profile=profile, say=err.print)
    with tempfile.TemporaryDirectory(prefix="logferry-deploy-") as tmp:
        if zip_path is None:
            needs = resolve_needs(config, (), ledger, None)
            zip_path = Path(tmp) / "logferry-lambda.zip"
            built = packaging.build_lambda_zip(
                zip_path,
                arch=arch,
                postgres=needs.postgres,
                extras=needs.extras,
                constraints=packaging.default_constraints(),
            )
            err.print(
                f"built the package: {human_bytes(built.zipped_bytes)} zipped, "
                f"{human_bytes(built.unzipped_bytes)} unzipped, extras: "
                f"{', '.join(built.extras) or 'none'}"
            )
        done = run_deploy(
            deployer,
            stack=stack,
            zip_path=zip_path,
            template=template,
            parameters=params,
            pipeline=config,
            code_bucket=code_bucket,
        )
    err.print(f"stack {done.stack} {done.action} (code {done.code})")
    if as_json:
        emit_json({"stack": done.stack, "action": done.action, "code": done.code,
                   "outputs": done.outputs})  # fmt: skip
        return
    for key, value in done.outputs.items():
        click.echo(f"{key}\t{value}")


__all__ = ["deploy"]
