"""The bench's AWS network model: what it takes each request to be, and EC2's token buckets."""

from __future__ import annotations

from bench.awsproxy import EC2_BUCKETS, TokenBucket, operation

SIGNED = "AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=x"


def test_requests_are_told_apart_by_service_and_action() -> None:
    s3 = {"authorization": SIGNED.format("s3")}
    assert operation("GET", s3, b"") == ("s3", "read")
    assert operation("HEAD", s3, b"") == ("s3", "read")
    assert operation("PUT", s3, b"chunk") == ("s3", "write")
    sqs = {"authorization": SIGNED.format("sqs"), "x-amz-target": "AmazonSQS.ReceiveMessage"}
    assert operation("POST", sqs, b"{}") == ("sqs", "ReceiveMessage")
    ec2 = {"authorization": SIGNED.format("ec2")}
    assert operation("POST", ec2, b"Action=CreateSecurityGroup&Version=2016-11-15") == ("ec2", "CreateSecurityGroup")


def test_a_bucket_allows_its_burst_then_refuses() -> None:
    rate, burst = EC2_BUCKETS["CreateSecurityGroup"]
    assert (rate, burst) == (5.0, 50.0)
    bucket = TokenBucket(0.0, burst)  # no refill: exactly the burst gets through
    assert sum(bucket.take() for _ in range(60)) == 50
