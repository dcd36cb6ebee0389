"""Lambda entry point: `serve` behind a Function URL, the backup as a read-only registry.

A thin adapter: Function URL events (payload 2.0) become Requests for the same
application the CLI serves (ecr_backup.serve.registry), its Responses become the URL's
answers. Blobs are always redirected (307) to presigned S3 URLs, since a Lambda answer
holds at most 6 MB; users (htpasswd -B lines) come from a Secrets Manager secret. Each
request adds to the metrics Requests, Pulls, ManifestsServed, Redirects, ClientErrors
and ServerErrors (ServerErrors is alarmed on).
"""

from __future__ import annotations

import base64
import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_backup.composition import AwsServices
from ecr_backup.errors import EcrBackupError
from ecr_backup.serve.auth import Htpasswd
from ecr_backup.serve.messages import RegistryProblem, Request, Response
from ecr_backup.serve.registry import Registry, ServeOptions, metrics_of
from ecr_backup.settings import ENV_PREFIX, Settings

logger = Logger()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"ecr_backup"})

USERS_SECRET = f"{ENV_PREFIX}SERVE_USERS_SECRET"


@cache
def registry() -> Registry:
    """Built once per container: clients, caches and users outlive an invocation."""
    services = AwsServices(Settings.load(os.environ))
    users = Htpasswd.parse(services.secret_text(os.environ[USERS_SECRET]), "the users secret")
    options = ServeOptions(blobs="redirect", htpasswd=users)
    return Registry(services.catalog(), services.store, options)


def request_of(event: dict[str, Any]) -> Request:
    """A Function URL event (payload format 2.0) as a Request."""
    http = event["requestContext"]["http"]
    query = event.get("rawQueryString") or ""
    target = event.get("rawPath") or http.get("path") or "/"
    return Request.of(
        http["method"], f"{target}?{query}" if query else target, event.get("headers")
    )


def answer_of(response: Response) -> dict[str, Any]:
    """A Response as the Function URL's answer; bodies that are not UTF-8 go base64."""
    body = response.body
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": text,
        "isBase64Encoded": encoded,
    }


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = request_of(event)
    try:
        response = registry().handle(request)
    except EcrBackupError as e:
        # Users could not be loaded (or the settings are wrong): nothing is served, and the
        # 5xx alarm says so.
        logger.error("serve cannot start", extra={"error": e.one_line()})
        response = RegistryProblem("UNKNOWN", "the registry is not configured").response()
    fired = set(metrics_of(request, response))
    # Every counter every time (zero included), so that each can be graphed and alarmed on.
    counts = {
        "Requests": 1,
        "Pulls": int("Pulls" in fired),
        "ManifestsServed": int("ManifestsServed" in fired),
        "Redirects": int("Redirects" in fired),
        "ClientErrors": int("ClientErrors" in fired),
        "ServerErrors": int("ServerErrors" in fired),
    }
    for name, value in counts.items():
        metrics.add_metric(name, MetricUnit.Count, value)
    logger.info(
        "request", extra={"method": request.method, "path": request.path, "status": response.status}
    )
    return answer_of(response)
