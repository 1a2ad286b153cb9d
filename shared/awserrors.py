"""Reading a botocore error's code: what AWS (and moto) answered. The codes that matter to S3 are in
``shared.s3``, to EC2 in ``shared.lock``: each service's errors are translated in one place."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
