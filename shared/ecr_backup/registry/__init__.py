"""The distribution-API client, its auth schemes and ECR's specifics."""
