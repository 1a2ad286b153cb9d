"""srdb over HTTP: one handler (powertools' ``LambdaFunctionUrlResolver``) for a Lambda function URL on
AWS and for ``srdb serve`` / ``srdb local`` here, and the web console it serves at ``/``."""
