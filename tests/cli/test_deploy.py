"""deploy/: the SAM template passes cfn-lint and wires what the Lambda handler needs."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from logferry import packaging as pkg
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
        if r["Type"] == "AWS::Serverless::Function"
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
    assert fn["CodeUri"].endswith(".zip")


def test_sqs_event_reports_partial_batch_failures() -> None:
    template = _template()
    events = list(_function(template)["Events"].values())
    assert [e["Type"] for e in events] == ["SQS"]
    props = events[0]["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["Queue"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert "BatchSize" in props


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
