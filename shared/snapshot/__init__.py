"""The storage engine: a SQLite file as content-addressed chunks and manifests in S3."""
