"""The OCI model: digests, media types, descriptors and manifests, references, verified streams."""
