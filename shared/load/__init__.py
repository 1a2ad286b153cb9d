"""Bulk loads (COPY): a file in S3 streamed into a table inside one write job."""
