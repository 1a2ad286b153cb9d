"""The deployment as packaged by ``make package``: linted, checked, created in moto's CloudFormation,
and then used: a job runs through the resources the stack created, named from its outputs, by the
handlers imported from the packaged zip alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from producer.client import Client
from producer.local.poller import to_lambda_event
from shared.job.result import JobState
from shared.lock.lease import S3Lease
from shared.lock.security_group import SecurityGroupLock, lock_groups
from shared.s3 import Bucket
from shared.settings import Settings

pytestmark = pytest.mark.deploy
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / ".serverless"
CREATE = TEMPLATES / "cloudformation-template-create-stack.json"
UPDATE = TEMPLATES / "cloudformation-template-update-stack.json"
ARTIFACT = ROOT / "build" / "srdb-lambda.zip"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module", autouse=True)
def packaged() -> None:
    missing = [str(p.relative_to(ROOT)) for p in (CREATE, UPDATE, ARTIFACT) if not p.exists()]
    assert not missing, f"{missing} missing: `make test` runs `make package` first"


@pytest.mark.parametrize("template", [CREATE, UPDATE], ids=["create", "update"])
def test_the_templates_pass_cfn_lint(template: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "cfnlint", "--format", "json", str(template)],
                         capture_output=True, text=True, timeout=300)
    findings = json.loads(run.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], errors


def test_the_stack_template_passes_checkov_and_every_skip_says_why() -> None:
    # The update template is the whole stack. The create template only bootstraps the deployment
    # bucket, which the update template holds too, with its skip and the reason for it.
    template = UPDATE
    assert CHECKOV.exists(), "checkov runs from its own venv (it pins an old boto3): `make test` builds it"
    run = subprocess.run([str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "--output", "json",
                          "--skip-download", "--quiet"], capture_output=True, text=True, timeout=600)
    report = json.loads(run.stdout)
    results = report["results"] if isinstance(report, dict) else {}
    assert results.get("failed_checks", []) == [], [c["check_id"] for c in results.get("failed_checks", [])]
    for check in results.get("skipped_checks", []):
        assert len(check.get("check_result", {}).get("suppress_comment", "")) > 20, check["check_id"]


def test_the_artifact_holds_the_handlers_and_their_dependencies_only() -> None:
    names = zipfile.ZipFile(ARTIFACT).namelist()
    for needed in ("worker/handler.py", "reaper/handler.py", "api/handler.py", "api/console.html",
                   "producer/client.py", "shared/snapshot/store.py", "boto3/__init__.py", "sqlparse/__init__.py",
                   "aws_lambda_powertools/__init__.py"):
        assert needed in names, needed
    assert any(n.startswith("apsw/__init__.cpython-312-aarch64") for n in names)  # pages on demand, for the runtime
    assert not [n for n in names if n.startswith(("tests/", "bench/", "moto/", "aioboto3/", "tqdm/"))]


@pytest.fixture
def stack(moto_endpoint: str, tmp_path: Path) -> Iterator[Callable[..., dict[str, str]]]:
    """The packaged templates deployed into moto's CloudFormation as the framework deploys them:
    the create template (the deployment bucket), the artifact, then the update template with the
    lock backend asked for (the LockBackend parameter; calling again switches it)."""
    kwargs: dict[str, Any] = {"endpoint_url": moto_endpoint, "region_name": "us-east-1",
                              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    cfn, s3 = boto3.client("cloudformation", **kwargs), boto3.client("s3", **kwargs)
    name = f"srdb-test-{tmp_path.name[-12:].replace('_', '-')}"
    cfn.create_stack(StackName=name, TemplateBody=CREATE.read_text())
    created = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert created["StackStatus"] == "CREATE_COMPLETE"
    bucket = {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}["ServerlessDeploymentBucketName"]
    template = json.loads(UPDATE.read_text())
    key = template["Resources"]["WorkerLambdaFunction"]["Properties"]["Code"]["S3Key"]
    s3.put_object(Bucket=bucket, Key=key, Body=ARTIFACT.read_bytes())

    def deploy(backend: str, kms_key: str = "") -> dict[str, str]:
        cfn.update_stack(StackName=name, TemplateBody=json.dumps(for_moto(template)), Capabilities=["CAPABILITY_IAM"],
                         Parameters=[{"ParameterKey": "LockBackend", "ParameterValue": backend},
                                     {"ParameterKey": "KmsKeyArn", "ParameterValue": kms_key}])
        updated = cfn.describe_stacks(StackName=name)["Stacks"][0]
        assert updated["StackStatus"] == "UPDATE_COMPLETE", updated.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in updated["Outputs"]}
        return {"SRDB_BUCKET": outputs["Bucket"], "SRDB_QUEUE_URL": outputs["QueueUrl"],
                "SRDB_DLQ_URL": outputs["DeadLetterQueueUrl"], "SRDB_CALLBACK_QUEUE_URL": outputs["CallbackQueueUrl"],
                "SRDB_VPC_ID": outputs["VpcId"], "SRDB_LOCK_PREFIX": outputs["LockPrefix"],
                "SRDB_LOCK_BACKEND": outputs["LockBackend"], "SRDB_REGION": outputs["Region"],
                "SRDB_ENDPOINT_URL": moto_endpoint, "SRDB_AWS_ACCESS_KEY_ID": "testing",
                "SRDB_AWS_SECRET_ACCESS_KEY": "testing", "SRDB_CACHE_DIR": str(tmp_path / f"lambda-tmp-{backend}"),
                "SRDB_LOCK_WAIT": "5",
                # The zip's APSW is built for the Lambda (arm64, Python 3.12) and cannot load on this machine:
                # the handlers run here with reads on whole copies; pages are tested in tests/integration.
                "SRDB_READ_PAGES": "0"}

    yield deploy


def for_moto(template: dict[str, Any]) -> dict[str, Any]:
    """The template without what moto's CloudFormation does not model and cannot resolve: the function URL
    (AWS::Lambda::Url) and the outputs that name it. Its settings are checked on the template itself
    (test_the_http_api_is_a_function_url_that_takes_only_signed_requests); its handler runs from the zip."""
    urls = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Url"}
    return {**template, "Resources": {k: v for k, v in template["Resources"].items() if k not in urls},
            "Outputs": {k: v for k, v in template["Outputs"].items()
                        if not any(url in json.dumps(v["Value"]) for url in urls)}}


def lambda_invoke(handler: str, event: dict[str, Any], env: dict[str, str], tmp_path: Path) -> Any:
    """Call a handler as Lambda would: a fresh interpreter, the packaged zip as its only library."""
    lambda_root = tmp_path / "task"
    if not lambda_root.exists():
        zipfile.ZipFile(ARTIFACT).extractall(lambda_root)
    module, function = handler.rsplit(".", 1)
    code = (f"import json, sys; from {module} import {function}; "
            f"print(json.dumps({function}(json.load(sys.stdin), None)))")
    run = subprocess.run([sys.executable, "-S", "-c", code], input=json.dumps(event), capture_output=True,
                         text=True, timeout=120, cwd=lambda_root,
                         env={"PATH": os.environ["PATH"], "PYTHONPATH": str(lambda_root), **env})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_job_runs_through_the_deployed_resources_with_either_lock(stack: Callable[..., dict[str, str]],
                                                                    moto_endpoint: str, tmp_path: Path) -> None:
    # One stack (its names are fixed), deployed with the default lock, then switched to the lease.
    for backend in ("security-group", "s3"):
        run_through(stack(backend), backend, tmp_path / backend)
    # kmsKeyArn: SSE-KMS with a bucket key, both roles may use the key, and a job still runs through.
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    key = kms.create_key(Description="srdb test")["KeyMetadata"]["Arn"]
    env = stack("s3", key)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    rule = s3.get_bucket_encryption(Bucket=env["SRDB_BUCKET"])["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    template = json.loads(UPDATE.read_text())
    encryption = template["Resources"]["DataBucket"]["Properties"]["BucketEncryption"]
    assert encryption["ServerSideEncryptionConfiguration"][0]["BucketKeyEnabled"] is True  # moto does not keep it
    for role in ("WorkerRole", "ReaperRole"):
        statements = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        assert any(s.get("Fn::If", [None])[0] == "UseKmsKey" for s in statements), role
    run_through(env, "s3-kms", tmp_path / "kms")
    api_through(env, tmp_path / "api")


def run_through(env: dict[str, str], backend: str, tmp_path: Path) -> None:
    settings = Settings.load(env)
    database = f"deployed-{backend}"
    client = Client(settings)
    create = client.submit(database, "CREATE TABLE t (a INTEGER)")
    insert = client.submit(database, "INSERT INTO t VALUES (?)", [41])
    sqs = boto3.client("sqs", endpoint_url=settings.endpoint_url, region_name=settings.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def deliver() -> None:
        messages = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10,
                                       MessageSystemAttributeNames=["All"]).get("Messages", [])
        response = lambda_invoke("worker.handler.handle", to_lambda_event(messages, arn, settings.region), env,
                                 tmp_path)
        assert response == {"batchItemFailures": []}
        for m in messages:
            sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=m["ReceiptHandle"])

    deliver()
    assert client.status(create).state is JobState.SUCCEEDED
    assert client.status(insert).state is JobState.SUCCEEDED
    read = client.submit(database, "SELECT a + 1 FROM t", reply_to=settings.callback_queue_url)
    deliver()
    assert client.status(read).values() == [[42]]
    callback = sqs.receive_message(QueueUrl=settings.callback_queue_url)["Messages"][0]
    assert json.loads(callback["Body"])["job_id"] == read

    if backend.startswith("s3"):
        assert settings.vpc_id == ""  # no VPC and no EC2 permission: the lease is an object in the bucket
        leases = S3Lease(Bucket(client.s3, settings.bucket), ttl=-1)
        leases.acquire(database, wait=10)  # the worker parked its lock for the linger: it waits that out
        report = lambda_invoke("reaper.handler.handle", {}, env, tmp_path)
        assert report["freed"] == [f"locks/{database}.json"]
        assert leases.held() == []
        return
    ec2 = boto3.client("ec2", endpoint_url=settings.endpoint_url, region_name=settings.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    # The worker parked its lock for the linger when its invocation ended: this waits that out.
    SecurityGroupLock(ec2, settings.vpc_id, prefix=settings.lock_prefix, ttl=-1).acquire(database, wait=10)
    report = lambda_invoke("reaper.handler.handle", {}, env, tmp_path)
    assert report["freed"] == [f"{settings.lock_prefix}-lock-{database}"]
    assert lock_groups(ec2, settings.vpc_id) == []


def test_the_functions_run_python_3_12_with_the_frameworks_schema_check_on() -> None:
    """v3's schema predates python3.12: the template gets it through resources.extensions, so the
    framework validates the rest of serverless.yml (configValidationMode: error) and prints no warning."""
    functions = {name: r["Properties"]["Runtime"] for name, r in json.loads(UPDATE.read_text())["Resources"].items()
                 if r["Type"] == "AWS::Lambda::Function"}
    assert functions == {"WorkerLambdaFunction": "python3.12", "ReaperLambdaFunction": "python3.12",
                         "ApiLambdaFunction": "python3.12"}
    assert "configValidationMode: error" in (ROOT / "serverless.yml").read_text()



def signed_event(method: str, path: str, body: Any, user_id: str) -> dict[str, Any]:
    """The event a function URL with AuthType AWS_IAM hands its Lambda once SigV4 has checked the caller."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": path, "sourceIp": "10.0.0.1"},
                               "authorizer": {"iam": {"userId": user_id, "accountId": "123456789012"}},
                               "requestId": "r", "routeKey": "$default", "stage": "$default"},
            "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False}


def test_the_http_api_is_a_function_url_that_takes_only_signed_requests() -> None:
    template = json.loads(UPDATE.read_text())
    url = template["Resources"]["ApiLambdaFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url" and url["Properties"]["AuthType"] == "AWS_IAM"
    assert url["Properties"]["TargetFunctionArn"] == {"Fn::GetAtt": ["ApiLambdaFunction", "Arn"]}
    assert template["Outputs"]["HttpUrl"]["Value"] == {"Fn::GetAtt": ["ApiLambdaFunctionUrl", "FunctionUrl"]}
    policy = json.dumps(template["Resources"]["WriterQueuePolicy"])
    assert "ApiRole" in policy  # allowed beside the writers when writerPrincipals limits the job queue


def api_through(env: dict[str, str], tmp_path: Path) -> None:
    """A signed request to the deployed API's handler, from the packaged zip: a job submitted, run by the
    deployed worker, and its result read back through the API."""
    submitted = lambda_invoke("api.handler.handle", signed_event(
        "POST", "/v1/databases/web/query", {"sql": "CREATE TABLE t (a)", "wait": 0}, "AROAALICE:alice"), env, tmp_path)
    assert submitted["statusCode"] == 202, submitted
    job_id = json.loads(submitted["body"])["job_id"]
    settings = Settings.load(env)
    sqs = boto3.client("sqs", endpoint_url=settings.endpoint_url, region_name=settings.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10,
                                   MessageSystemAttributeNames=["All"]).get("Messages", [])
    assert lambda_invoke("worker.handler.handle", to_lambda_event(messages, arn, settings.region), env,
                         tmp_path) == {"batchItemFailures": []}
    done = lambda_invoke("api.handler.handle", signed_event("GET", f"/v1/jobs/{job_id}", None, "AROAALICE:alice"),
                         env, tmp_path)
    assert done["statusCode"] == 200 and json.loads(done["body"])["state"] == "SUCCEEDED"
