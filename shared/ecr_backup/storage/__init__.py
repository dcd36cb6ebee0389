"""Where backups live: the S3 blob store, the bucket reader, the DynamoDB index and its schema."""
