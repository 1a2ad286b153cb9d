"""The worker Lambda: runs SQS batches of jobs against databases stored in S3."""
