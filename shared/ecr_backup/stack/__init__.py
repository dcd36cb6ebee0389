"""The deployed stack as CloudFormation, CloudWatch and SQS describe it (read only)."""
