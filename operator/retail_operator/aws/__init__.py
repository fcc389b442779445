"""Adapters for the AWS services the operator reads: ECR (images, scans) and S3 (models).

They translate boto3's exceptions into the operator's error vocabulary (``errors``) and its
responses into plain values (``facts``); they hold no rollout logic.
"""
