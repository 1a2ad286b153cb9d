"""The job protocol: what crosses SQS and results/ — jobs, values, envelopes, states, status documents."""
