"""deploy/: the CloudFormation template passes cfn-lint and wires what the Lambda handler needs;
``logferry deploy aws`` creates and updates the stack (against moto in server mode)."""

from __future__ import annotations

import json
import subprocess
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from logferry import packaging as pkg
from logferry.cli.deploy import deploy
from logferry.serverless import aws_deploy
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
TEMPLATE = DEPLOY / "aws" / "template.yaml"

try:
    from cfnlint.api import ManualArgs, lint_file
    from cfnlint.decode import decode_str
except ImportError:  # pragma: no cover - a missing dev dependency must fail loudly
    pytest.fail("cfn-lint is missing: pip install -e '.[dev]'", pytrace=False)


def _template() -> dict[str, Any]:
    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    return dict(template)


def _function(template: dict[str, Any]) -> dict[str, Any]:
    functions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    assert len(functions) == 1
    return functions[0]


def _refs(value: Any) -> set[str]:
    """Every ``Ref`` target inside an intrinsic-function tree."""
    if isinstance(value, dict):
        return {v for k, v in value.items() if k == "Ref"} | {
            r for v in value.values() for r in _refs(v)
        }
    if isinstance(value, list):
        return {r for v in value for r in _refs(v)}
    return set()


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    matches = lint_file(TEMPLATE, ManualArgs(regions=["us-east-1", "eu-west-1"]))
    problems = [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]
    assert not problems, "\n".join(problems)


def test_function_runs_the_lambda_handler_on_the_packaged_runtime() -> None:
    fn = _function(_template())
    assert fn["Handler"] == "logferry.serverless.aws_lambda.handler"
    # The zip's native wheels are built for one Python: the default must match the runtime.
    assert fn["Runtime"] == f"python{pkg.DEFAULT_PYTHON}"
    assert fn["Code"] == {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}
    assert fn["Role"] == {"Fn::GetAtt": ["ShipperRole", "Arn"]}
    # Plain CloudFormation: no transform, so moto and `aws cloudformation deploy` take it as is.
    assert "Transform" not in _template()


def test_sqs_event_reports_partial_batch_failures() -> None:
    resources = _template()["Resources"]
    mappings = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 1
    props = mappings[0]["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "Shipper"}
    assert "BatchSize" in props
    # The role may read the bucket and take from the queue, nothing more.
    statements = resources["ShipperRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "sqs:ReceiveMessage",
                       "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}  # fmt: skip


def test_queue_has_a_dead_letter_queue_and_a_long_enough_visibility_timeout() -> None:
    template = _template()
    queue = template["Resources"]["Queue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert template["Resources"]["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    assert _refs(redrive["maxReceiveCount"]) == {"MaxReceiveCount"}
    # Visibility timeout = 6 x function timeout for every timeout the template allows.
    assert queue["VisibilityTimeout"]["Fn::FindInMap"][0] == "QueueVisibility"
    table = template["Mappings"]["QueueVisibility"]
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    assert {int(t) for t in allowed} == {int(t) for t in table}
    assert all(table[str(t)]["Seconds"] >= 6 * int(t) for t in allowed)


def test_bucket_notifies_the_queue_which_admits_only_that_bucket() -> None:
    resources = _template()["Resources"]
    notify = resources["LogBucket"]["Properties"]["NotificationConfiguration"]
    assert notify["QueueConfigurations"][0]["Queue"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert resources["LogBucket"]["DependsOn"] == "QueuePolicy"
    statement = resources["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert "aws:SourceArn" in statement["Condition"]["ArnLike"]


def test_environment_contract_is_wired_to_parameters() -> None:
    template = _template()
    params = template["Parameters"]
    env = _function(template)["Environment"]["Variables"]
    assert _refs(env["LOGFERRY_LEDGER"]) >= {"LedgerUrl"}
    assert params["LedgerUrl"].get("NoEcho") is True
    assert _refs(env["LOGFERRY_SINKS"]) >= {"Sinks"}
    assert _refs(env["LOGFERRY_DEADLINE_MARGIN_MS"]) == {"DeadlineMarginMs"}
    assert _refs(env["LOGFERRY_BUCKETS"]) == {"BucketName"}  # the allow-list: this bucket only
    assert _refs(env["LOGFERRY_CONFIG"]) >= {"PipelineFile"}
    # The ingestion key is resolved from Secrets Manager, never a plain parameter value.
    key = env["LOGDNA_INGESTION_KEY"]["Fn::If"][1]["Fn::Sub"]
    assert key.startswith("{{resolve:secretsmanager:")


def test_ibm_script_is_valid_bash_and_creates_job_and_subscription() -> None:
    script = DEPLOY / "ibm" / "deploy.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for command in (
        "ibmcloud ce job create",
        "--env-from-secret",
        "ibmcloud ce subscription cos create",
        "--destination-type job",
        "--array-indices",
    ):
        assert command in text, command
    readme = (DEPLOY / "README.md").read_text()
    assert "## AWS Lambda" in readme
    assert "## IBM Code Engine" in readme
    assert 'CMD ["job"]' in (DEPLOY / "ibm" / "Dockerfile").read_text()


# --- logferry deploy aws, against moto in server mode -------------------------------------
# moto creates the queues, the role, the function (code from the uploaded zip), the event
# source mapping, the log group and the bucket. It does not implement AWS::SQS::QueuePolicy
# or AWS::CloudWatch::Alarm, nor apply a bucket's NotificationConfiguration from a template:
# those are checked by cfn-lint and the template tests above only.


def _deploy(endpoint: str, *args: str) -> Any:
    return CliRunner().invoke(
        deploy, ["aws", "--endpoint-url", endpoint, "--region", "us-east-1", *args],
        env={"LOGFERRY_LEDGER": None, "AWS_PROFILE": None},
    )  # fmt: skip


def _stack_resources(endpoint: str, stack: str) -> dict[str, str]:
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1")
    found = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    # moto lists the resources it does not implement without ids: leave those out.
    return {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in found
        if "LogicalResourceId" in r
    }


def test_deploy_creates_the_stack_then_updates_it(  # type: ignore[no-untyped-def]
    s3_endpoint, lean_zip, s3_mezmo_pipeline
) -> None:
    zip_path, _ = lean_zip
    stack = f"logferry-{uuid.uuid4().hex[:8]}"
    base = ("-c", str(s3_mezmo_pipeline), "--stack", stack, "--zip", str(zip_path))
    created = _deploy(s3_endpoint, *base, "--ledger", "postgresql://u:secret@db/l", "--json")
    assert created.exit_code == 0, created.output
    report = json.loads(created.stdout)
    assert report["action"] == "created"
    outputs = report["outputs"]
    assert {"FunctionName", "QueueArn", "QueueUrl", "DeadLetterQueueUrl"} <= set(outputs)
    assert "secret" not in created.output

    # The function runs the packaged handler on the pipeline file put into the zip.
    lam = boto3.client("lambda", endpoint_url=s3_endpoint, region_name="us-east-1")
    fn = lam.get_function(FunctionName=outputs["FunctionName"])
    config = fn["Configuration"]
    assert config["Handler"] == "logferry.serverless.aws_lambda.handler"
    assert config["Runtime"] == f"python{pkg.DEFAULT_PYTHON}"
    env = config["Environment"]["Variables"]
    assert env["LOGFERRY_CONFIG"] == "/var/task/logferry-pipeline.yaml"
    assert env["LOGFERRY_BUCKETS"] == "flow-logs-bucket"  # from the pipeline's s3:// source
    assert env["LOGFERRY_LEDGER"] == "postgresql://u:secret@db/l"
    code_bucket, _, code_key = report["code"].removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    uploaded = tmp_zip = Path(zip_path).with_name("uploaded.zip")
    tmp_zip.write_bytes(s3.get_object(Bucket=code_bucket, Key=code_key)["Body"].read())
    with zipfile.ZipFile(uploaded) as zf:
        assert zf.read("logferry-pipeline.yaml") == s3_mezmo_pipeline.read_bytes()
        assert "logferry/serverless/aws_lambda.py" in zf.namelist()

    # SQS feeds it with partial batch responses; the queue's dead letters go to the DLQ.
    (mapping,) = lam.list_event_source_mappings(FunctionName=outputs["FunctionName"])[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == outputs["QueueArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    sqs = boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")
    attrs = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(outputs["DeadLetterQueueUrl"].rsplit("/", 1)[1])
    assert int(attrs["VisibilityTimeout"]) == 1800  # 6 x the default 300 s timeout
    resources = _stack_resources(s3_endpoint, stack)
    assert {
        "Shipper",
        "ShipperRole",
        "ShipperEvents",
        "Queue",
        "DeadLetterQueue",
        "LogBucket",
    } <= set(resources)
    s3.head_bucket(Bucket="flow-logs-bucket")

    # The same package again: no new upload; a changed parameter updates the stack.
    again = _deploy(s3_endpoint, *base, "-p", "MemorySize=512")
    assert again.exit_code == 0, again.output
    assert "already uploaded" in again.output
    assert f"stack {stack} updated" in again.output
    assert "FunctionName\t" in again.stdout
    fn = lam.get_function(FunctionName=outputs["FunctionName"])["Configuration"]
    assert fn["MemorySize"] == 512
    # Parameters not given keep their values (the ledger URL was not passed again).
    assert fn["Environment"]["Variables"]["LOGFERRY_LEDGER"] == "postgresql://u:secret@db/l"


def test_deploy_builds_the_package_when_not_given_one(  # type: ignore[no-untyped-def]
    s3_endpoint, lean_zip, s3_mezmo_pipeline, monkeypatch
) -> None:
    """The one-command path: build (here a copy of the session's build), upload, deploy."""
    zip_path, _ = lean_zip
    seen: dict[str, Any] = {}

    def build(out: Path, **kwargs: Any) -> pkg.Built:
        seen.update(kwargs)
        out.write_bytes(zip_path.read_bytes())
        return pkg.Built(out, out.stat().st_size, 1, 1)

    monkeypatch.setattr(pkg, "build_lambda_zip", build)
    stack = f"logferry-{uuid.uuid4().hex[:8]}"
    result = _deploy(s3_endpoint, "-c", str(s3_mezmo_pipeline), "--stack", stack,
                     "--bucket", "other-bucket", "--existing-bucket", "--arch", "arm64")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "built the package" in result.output
    assert seen["arch"] == "arm64"
    assert seen["extras"] == set()
    assert seen["constraints"] == REPO / "deploy" / "constraints.txt"
    assert "LogBucket" not in _stack_resources(s3_endpoint, stack)  # CreateBucket=false
    lam = boto3.client("lambda", endpoint_url=s3_endpoint, region_name="us-east-1")
    name = result.stdout.split("FunctionName\t")[1].split()[0]
    fn = lam.get_function(FunctionName=name)["Configuration"]
    assert fn["Environment"]["Variables"]["LOGFERRY_BUCKETS"] == "other-bucket"
    # moto does not pass Architectures on to the function: check the stack's parameter.
    cfn = boto3.client("cloudformation", endpoint_url=s3_endpoint, region_name="us-east-1")
    params = cfn.describe_stacks(StackName=stack)["Stacks"][0]["Parameters"]
    assert {"ParameterKey": "Architecture", "ParameterValue": "arm64"} in params


def test_deploy_errors_are_one_line(tmp_path, s3_endpoint, lean_zip) -> None:  # type: ignore[no-untyped-def]
    zip_path, _ = lean_zip
    no_s3 = tmp_path / "p.yaml"
    no_s3.write_text(
        "sinks: {m: {url: logdna:us-south}}\nsources: {d: {url: /tmp/x, sinks: [m]}}\n"
    )
    bad = _deploy(s3_endpoint, "-c", str(no_s3), "--stack", "s", "--zip", str(zip_path))
    assert bad.exit_code == 2
    assert "no s3:// source: name the bucket to announce with --bucket" in bad.output
    param = _deploy(s3_endpoint, "-c", str(no_s3), "--stack", "s", "--bucket", "b", "-p", "oops")
    assert param.exit_code == 2
    assert "--parameter takes KEY=VALUE" in param.output
    down = CliRunner().invoke(deploy, ["aws", "-c", str(no_s3), "--stack", "s", "--bucket", "b",
                                       "--zip", str(zip_path), "--region", "us-east-1",
                                       "--endpoint-url", "http://127.0.0.1:9"],
                              env={"AWS_MAX_ATTEMPTS": "1"})  # fmt: skip
    assert down.exit_code == 1
    lines = [ln for ln in down.output.splitlines() if ln.strip()]
    assert len(lines) == 1, down.output
    assert "Could not connect" in lines[0] or "connect" in lines[0].lower()


def test_failed_stack_reports_the_failed_resource(s3_endpoint, lean_zip, s3_mezmo_pipeline) -> None:  # type: ignore[no-untyped-def]
    """A stack AWS (here moto) refuses names the failing step in one line, exit 1."""
    zip_path, _ = lean_zip
    result = _deploy(s3_endpoint, "-c", str(s3_mezmo_pipeline), "--stack", "bad_name!",
                     "--zip", str(zip_path))  # fmt: skip
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error:")


def test_pipeline_goes_into_a_copy_of_the_zip(tmp_path, s3_mezmo_pipeline) -> None:  # type: ignore[no-untyped-def]
    original = tmp_path / "a.zip"
    with zipfile.ZipFile(original, "w") as zf:
        zf.writestr("logferry/__init__.py", "")
    work = tmp_path / "work"
    work.mkdir()
    copy = aws_deploy.with_pipeline(original, s3_mezmo_pipeline, work)
    assert zipfile.ZipFile(original).namelist() == ["logferry/__init__.py"]
    assert zipfile.ZipFile(copy).namelist() == ["logferry/__init__.py", "logferry-pipeline.yaml"]
