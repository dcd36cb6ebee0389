"""A client of the OCI Distribution API: enough to back images up and to restore them.

Blob GETs follow the registry's redirect to presigned storage URLs (ECR sends S3 URLs)
without forwarding our Authorization header to that other host.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ecr_backup.cancellation import CANCELLATION, cancellable_sleep, check_cancelled
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    InvalidInputError,
    ManifestNotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryThrottledError,
    RepositoryNotFoundError,
    registry_unreachable,
    timed_out,
)
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest, parse_manifest
from ecr_backup.oci.streams import Readable
from ecr_backup.registry.auth import Anonymous, Credentials
from ecr_backup.registry.tls import TlsOptions
from ecr_backup.registry.upload import upload_blob
from ecr_backup.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from ecr_backup.settings import (
    REGISTRY_COMMIT_READ_TIMEOUT_S,
    REGISTRY_CONNECT_TIMEOUT_S,
    REGISTRY_SILENT_ATTEMPTS,
    SEND_PIECE_SIZE,
)

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        http: urllib3.PoolManager | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = cancellable_sleep,
    ) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"https://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInputError(f"invalid registry URL {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self._credentials = credentials or Anonymous()
        self._http = http or TlsOptions().pool_manager()
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    # -- reading ---------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest; by digest, the bytes must hash to it."""
        response = self._registry_request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
        )
        if response.status == 404:
            raise self._not_found(response, f"manifest {repository}:{reference}")
        self._raise_for_status(response, f"GET manifest {repository}:{reference}")
        manifest = parse_manifest(response.data, response.headers.get("Content-Type"))
        if reference.startswith("sha256:") and str(manifest.digest) != reference:
            raise DigestMismatchError(
                reference, f"registry served bytes hashing to {manifest.digest}"
            )
        return manifest

    @contextmanager
    def open_blob(self, repository: str, digest: Digest) -> Iterator[Readable]:
        """Stream a blob; a connection dropped mid-body resumes where it stopped (Range)."""
        check_cancelled()
        stream = _ResumingBody(self, repository, digest)
        try:
            with CANCELLATION.closing_on_cancel(stream.shut_down):
                yield stream
        finally:
            stream.close()

    def _open_blob_at(
        self, repository: str, digest: Digest, offset: int
    ) -> urllib3.BaseHTTPResponse:
        """GET a blob from `offset`, following the redirect to storage without our credentials."""
        path = f"/v2/{repository}/blobs/{digest}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._registry_request("GET", path, headers=headers, stream=True)
        if response.status in _REDIRECTS:
            location = urljoin(self.base_url + path, response.headers["Location"])
            response.drain_conn()
            response.release_conn()
            response = self._send("GET", location, headers=headers, stream=True, auth=False)
        if response.status == 404:
            response.drain_conn()
            response.release_conn()
            raise BlobNotFoundError(f"blob {digest} not found in {repository}")
        expected = (206,) if offset else (200,)
        if response.status not in expected:
            response.drain_conn()
            response.release_conn()
            self._raise_for_status(response, f"GET blob {repository}@{digest}", expect=expected)
        return response

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """HEAD a blob: its size when the repository holds it, else None."""
        response = self._registry_request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status == 404:
            return None
        if response.status in _REDIRECTS:
            return int(response.headers.get("Content-Length", "0") or 0)
        self._raise_for_status(response, f"HEAD blob {repository}@{digest}")
        return int(response.headers.get("Content-Length", "0"))

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest a tag (or digest) resolves to in the repository, or None when absent.

        HEAD answers with Docker-Content-Digest; a registry that leaves it out costs a GET.
        """
        response = self._registry_request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
        )
        if response.status == 404:
            return None
        self._raise_for_status(response, f"HEAD manifest {repository}:{reference}")
        served = response.headers.get("Docker-Content-Digest")
        if served:
            return Digest.parse(served)
        if reference.startswith("sha256:"):
            return Digest.parse(reference)
        return self.get_manifest(repository, reference).digest

    def referrers(self, repository: str, subject: Digest) -> list[Descriptor] | None:
        """The referrers API's descriptors for `subject` (every page), or None when the
        registry answers 404: it has no referrers API (distribution-spec 1.1)."""
        found: list[Descriptor] = []
        path: str | None = f"/v2/{repository}/referrers/{subject}"
        while path is not None:
            response = self._registry_request("GET", path, headers={"Accept": mediatypes.OCI_INDEX})
            if response.status == 404:
                return None
            self._raise_for_status(response, f"GET referrers of {repository}@{subject}")
            found += parse_manifest(response.data, mediatypes.OCI_INDEX).children
            path = _next_page(response.headers.get("Link"))
        return found

    # -- writing ---------------------------------------------------------------

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Ask the registry to link a blob it holds in another repository; True if it did."""
        query = urlencode({"mount": str(digest), "from": from_repository})
        response = self._registry_request(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}", body=b""
        )
        if response.status == 201:
            return True
        if response.status == 202:
            # Not mounted: the registry opened an upload session we will not use.
            self.cancel_upload(response.headers.get("Location"))
            return False
        if response.status in (404, 405):
            return False
        self._raise_for_status(response, f"mount {digest} into {repository}")
        return False

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        source: Readable,
        *,
        chunk_size: int | None = None,
    ) -> None:
        """Upload a blob in a new upload session: one streamed request unless `chunk_size`
        (registry/upload.py says why)."""
        upload_blob(self, repository, digest, size, source, chunk_size=chunk_size)

    # -- upload sessions: the protocol; registry/upload.py decides what is sent ----------

    def ping(self) -> None:
        """GET /v2/ with our credentials: the registry answers and accepts them."""
        response = self._registry_request("GET", "/v2/")
        self._raise_for_status(response, f"GET {self.host}/v2/")

    def check_push(self, repository: str) -> None:
        """Open an upload session in `repository` and cancel it: the registry answers, has
        the repository and lets our credentials push there; nothing is left behind."""
        self.cancel_upload(self._open_upload(repository, f"open an upload in {repository}"))

    def start_upload(self, repository: str, digest: Digest) -> str:
        """POST a new upload session; its absolute URL."""
        check_cancelled()
        return self._open_upload(repository, f"start upload of {digest} to {repository}")

    def _open_upload(self, repository: str, what: str) -> str:
        start = self._registry_request("POST", f"/v2/{repository}/blobs/uploads/", body=b"")
        if start.status == 404 and "NAME_UNKNOWN" in _error_codes(start):
            raise RepositoryNotFoundError(
                f"repository {repository} does not exist in {self.host}",
                code="NAME_UNKNOWN",
                status=404,
                hint="create it first; for an ECR target, restore with --create-repository",
            )
        self._raise_for_status(start, what, expect=(202,))
        return self._upload_location(start)

    def send_to_upload(
        self,
        location: str,
        *,
        headers: dict[str, str],
        body: bytes | Iterator[bytes],
        expect: tuple[int, ...],
        what: str,
    ) -> str:
        """PATCH data into an upload session (a streamed body is sent once); where the
        session goes on: the Location the registry answered."""
        response = self._send("PATCH", location, headers=headers, body=body, slow_answer=True)
        self._raise_for_status(response, what, expect=expect)
        return self._upload_location(response)

    def finish_upload(
        self,
        location: str,
        *,
        headers: dict[str, str],
        body: bytes,
        expect: tuple[int, ...],
        what: str,
    ) -> None:
        """PUT the session's last bytes (maybe none) with ?digest= in `location`: the commit."""
        response = self._send("PUT", location, headers=headers, body=body, slow_answer=True)
        self._raise_for_status(response, what, expect=expect)

    def cancel_upload(self, location: str | None) -> None:
        """DELETE an upload session we will not finish; best effort (sessions also expire)."""
        if not location:
            return
        with contextlib.suppress(RegistryError):
            url = urljoin(self.base_url + "/", location)
            cancelled = self._send("DELETE", url, headers={}, once=True)
            cancelled.drain_conn()

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> Digest:
        """PUT the manifest's exact bytes, so the registry computes the same digest."""
        response = self._registry_request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Content-Type": manifest.media_type},
            body=manifest.raw,
        )
        self._raise_for_status(response, f"PUT manifest {repository}:{reference}")
        served = response.headers.get("Docker-Content-Digest")
        if served and served != str(manifest.digest):
            raise DigestMismatchError(manifest.digest, f"registry recorded {served}")
        return manifest.digest

    # -- plumbing --------------------------------------------------------------

    def _registry_request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        return self._send(
            method, self.base_url + path, headers=headers or {}, body=body, stream=stream
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
        auth: bool = True,
        once: bool = False,
        slow_answer: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One request, repeated while the registry throttles or fails (if the body allows
        and not `once`); met by silence, it is sent at most REGISTRY_SILENT_ATTEMPTS times.
        `slow_answer`: the registry stores a blob before it answers (settings.py).

        A streamed body (an iterator) is sent once: its caller starts over. Credentials are
        refreshed once when the registry calls them stale: 401, or ECR's 403 DENIED for an
        expired token ("Your authorization token has expired").
        """
        resendable = not once and not isinstance(body, Iterator)
        # Left out, the pool's timeouts apply (None would mean none at all).
        timeout: dict[str, Any] = {"timeout": self._slow_answer_timeout()} if slow_answer else {}
        refreshed = False
        attempt = 0
        while True:
            sent = dict(headers)
            if auth:
                authorization = self._credentials.authorization(refresh=refreshed)
                if authorization:
                    sent["Authorization"] = authorization
            if isinstance(body, bytes) and body:
                sent.setdefault("Content-Length", str(len(body)))
            try:
                response = self._http.request(
                    method,
                    url,
                    headers=sent,
                    body=_in_pieces(body),
                    preload_content=not stream,
                    redirect=False,
                    retries=False,
                    **timeout,
                )
            except Urllib3Error as e:
                check_cancelled()  # an interrupt, not a failure: never retried
                limit = self._retry.attempts
                if timed_out(e):
                    limit = min(limit, REGISTRY_SILENT_ATTEMPTS)
                if not resendable or attempt + 1 >= limit:
                    raise registry_unreachable(f"{method} {_safe(url)}", url, e) from e
                # Seen with -v: the error, if the retries fail too, is the one line people get.
                log.info("retrying %s %s after %s", method, _safe(url), type(e).__name__)
                self._sleep(self._retry.delay(attempt))
                attempt += 1
                continue
            if auth and not refreshed and _stale_credentials(response):
                if once:
                    return response  # best effort (a cancelled session): not worth a new token
                response.drain_conn()
                refreshed = True
                if resendable:
                    continue
                # A streamed body is gone: fetch the new token now, the caller starts over.
                self._credentials.authorization(refresh=True)
                raise RegistryAuthError(
                    f"{method} {_safe(url)}: credentials went stale mid-upload",
                    status=response.status,
                    retryable=True,
                )
            if (
                response.status in RETRYABLE_STATUSES
                and resendable
                and attempt + 1 < self._retry.attempts
            ):
                wait = self._retry.delay(
                    attempt, parse_retry_after(response.headers.get("Retry-After"))
                )
                log.warning(
                    "%s %s: HTTP %d, retrying in %.1f s", method, _safe(url), response.status, wait
                )
                response.drain_conn()
                self._sleep(wait)
                check_cancelled()
                attempt += 1
                continue
            return response

    def _slow_answer_timeout(self) -> urllib3.Timeout:
        """The pool's connect timeout (it also bounds each send), a longer read timeout."""
        pool = self._http.connection_pool_kw.get("timeout")
        connect = pool.connect_timeout if isinstance(pool, urllib3.Timeout) else None
        return urllib3.Timeout(
            connect=connect if isinstance(connect, float | int) else REGISTRY_CONNECT_TIMEOUT_S,
            read=REGISTRY_COMMIT_READ_TIMEOUT_S,
        )

    def _upload_location(self, response: urllib3.BaseHTTPResponse) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError("registry did not return an upload location")
        return urljoin(self.base_url + "/", location)

    def _not_found(self, response: urllib3.BaseHTTPResponse, what: str) -> Exception:
        codes = _error_codes(response)
        if "NAME_UNKNOWN" in codes or "REPOSITORY_NOT_FOUND" in codes:
            return RepositoryNotFoundError(
                f"{what}: repository not found", code="NAME_UNKNOWN", status=404
            )
        return ManifestNotFoundError(
            f"{what} not found", code=codes[0] if codes else None, status=404
        )

    @staticmethod
    def _raise_for_status(
        response: urllib3.BaseHTTPResponse, what: str, expect: tuple[int, ...] = (200,)
    ) -> None:
        """Nothing when the status is expected; else one error naming the registry's codes."""
        if response.status in expect or (expect == (200,) and 200 <= response.status < 300):
            return
        found = _error_codes(response)
        codes = ", ".join(found) or "no error code"
        message = f"{what}: HTTP {response.status} ({codes})"
        code = found[0] if found else None
        if _stale_credentials(response):
            raise RegistryAuthError(
                f"{message}: registry refused our credentials",
                code=code,
                status=response.status,
                hint="check the registry user and password, or the AWS credentials for ECR",
            )
        if response.status in RETRYABLE_STATUSES:
            raise RegistryThrottledError(
                message,
                code=code,
                status=response.status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        raise RegistryError(message, code=code, status=response.status)


class _ResumingBody:
    """A blob body that reopens at the current offset when the connection drops.

    Large layers take minutes to stream; a dropped connection then costs a reconnect,
    not a restart of the whole copy. The digest is still checked by the caller.
    """

    def __init__(self, client: RegistryClient, repository: str, digest: Digest) -> None:
        self._client = client
        self._repository = repository
        self._digest = digest
        self._offset = 0
        self._response = client._open_blob_at(repository, digest, 0)

    def read(self, amt: int = -1, /) -> bytes:
        attempt = 0
        while True:
            try:
                data = self._response.read(amt if amt >= 0 else None)
            except Urllib3Error as e:
                check_cancelled()  # shut by an interrupt: no resuming
                attempt += 1
                if attempt >= self._client._retry.attempts:
                    what = f"GET blob {self._repository}@{self._digest}"
                    raise registry_unreachable(what, self._client.base_url, e) from e
                log.warning("resuming %s at byte %d after %s", self._digest, self._offset, e)
                self._response.release_conn()
                self._client._sleep(self._client._retry.delay(attempt))
                self._response = self._client._open_blob_at(
                    self._repository, self._digest, self._offset
                )
                continue
            self._offset += len(data)
            return data

    def shut_down(self) -> None:
        """Shut the connection from another thread: a read blocked on it returns."""
        self._response.shutdown()

    def close(self) -> None:
        self._response.release_conn()


def _next_page(link: str | None) -> str | None:
    """The path of RFC 5988's rel="next" link, if any."""
    for part in (link or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            parts = urlsplit(target.strip()[1:-1])
            return f"{parts.path}?{parts.query}" if parts.query else parts.path
    return None


def _error_codes(response: urllib3.BaseHTTPResponse) -> list[str]:
    try:
        body = json.loads(response.data or b"{}")
    except (ValueError, UnicodeDecodeError):
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]


def _stale_credentials(response: urllib3.BaseHTTPResponse) -> bool:
    """401, or the 403 DENIED that ECR sends for an expired token
    (awslabs/amazon-ecr-credential-helper#7: "Your Authorization Token has expired")."""
    return response.status == 401 or (response.status == 403 and "DENIED" in _error_codes(response))


def _safe(url: str) -> str:
    """A URL without its query string: presigned URLs carry credentials there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _in_pieces(body: bytes | Iterator[bytes] | None) -> bytes | Iterator[bytes] | None:
    """The body as pieces of at most SEND_PIECE_SIZE (views, not copies): urllib3 bounds
    each send of a body by the connect timeout, so a large piece on a slow link that
    still progresses would time out."""
    if not body:
        return body
    chunks = [body] if isinstance(body, bytes) else body

    def pieces() -> Iterator[memoryview]:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), SEND_PIECE_SIZE):
                yield view[start : start + SEND_PIECE_SIZE]

    # urllib3 sends any buffer; its type names bytes and str only.
    return cast(Iterator[bytes], pieces())
