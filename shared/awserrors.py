"""Reading botocore errors: one place that knows the codes AWS (and moto) use."""

from __future__ import annotations

from botocore.exceptions import ClientError

# 412 is a failed If-Match / If-None-Match; 409 ConditionalRequestConflict is a concurrent
# conditional write to the same key. Both mean "someone else wrote first".
PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
NOT_MODIFIED_CODES = {"304", "NotModified"}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
