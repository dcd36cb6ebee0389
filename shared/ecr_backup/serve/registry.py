"""The read-only registry: OCI Distribution API v2 pull endpoints over the bucket and index.

Transport-neutral: `handle` takes a Request and returns a Response. Where the spec leaves
a choice, the answer is CNCF distribution's (error codes, pagination, HEAD semantics).
Manifests are served from their verified bytes; blobs are redirected (307) to a presigned
GET of the object version that hashes to the digest, or streamed by the server itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import quote

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import (
    DataError,
    DigestMismatchError,
    EcrBackupError,
    InvalidInputError,
    NotFoundError,
)
from ecr_backup.model import Action, rfc3339
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.oci.streams import Readable
from ecr_backup.serve.auth import CHALLENGE, Htpasswd
from ecr_backup.serve.contents import RepositoryContents
from ecr_backup.serve.messages import (
    API_VERSION_HEADER,
    BodyStream,
    RegistryProblem,
    Request,
    Response,
    json_response,
)
from ecr_backup.settings import SERVE_CHUNK, SERVE_MAX_PAGE, SERVE_PRESIGN_SECONDS

log = logging.getLogger(__name__)

BlobMode = Literal["redirect", "stream"]
READS = frozenset({"GET", "HEAD"})

_MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")
_BLOB = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)")
_TAGS = re.compile(r"/v2/(?P<name>.+)/tags/list")
_REFERRERS = re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)")
# The spec's digest grammar: a digest of another algorithm is well formed, just not held.
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class ServeOptions:
    blobs: BlobMode = "redirect"
    at: datetime | None = None  # tags as they were then; None: as they are now
    repository_prefix: str = ""
    htpasswd: Htpasswd | None = None
    presign_seconds: int = SERVE_PRESIGN_SECONDS


class ServedObjects(Protocol):
    """The bucket's objects as serve hands them out: redirected, or a byte range streamed."""

    def presigned_get(self, digest: Digest, version_id: str | None, expires_in: int) -> str: ...

    def open(
        self,
        digest: Digest,
        *,
        version_id: str | None = None,
        byte_range: tuple[int, int] | None = None,
    ) -> AbstractContextManager[Readable]: ...


class Registry:
    def __init__(
        self, catalog: Catalog, objects: ServedObjects, options: ServeOptions | None = None
    ) -> None:
        self.catalog = catalog
        self.objects = objects
        self.options = options or ServeOptions()
        self.contents = RepositoryContents(catalog)

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            response = self._route(request)
        except RegistryProblem as problem:
            response = problem.response()
        except EcrBackupError as e:
            log.error("%s %s: %s", request.method, request.path, e.one_line())
            response = RegistryProblem("UNKNOWN", e.one_line()).response()
        response.headers.append(API_VERSION_HEADER)
        if request.method == "HEAD" and response.stream is not None:
            response.close()
            response.stream = None
        if request.method == "HEAD":
            response.body = b""
        return response

    def _route(self, request: Request) -> Response:
        if request.method not in READS:
            raise RegistryProblem(
                "UNSUPPORTED",
                f"{request.method} is not supported: this registry is a read-only backup",
                headers=[("Allow", "GET, HEAD")],
            )
        self._authenticate(request)
        path = request.path
        if path in ("/v2", "/v2/"):
            return json_response(200, {})
        if path == "/v2/_catalog":
            return self._catalog(request)
        routes: tuple[tuple[re.Pattern[str], Callable[[Request, dict[str, str]], Response]], ...]
        routes = (
            (_TAGS, self._tags),
            (_MANIFEST, self._manifest),
            (_BLOB, self._blob),
            (_REFERRERS, self._referrers),
        )
        for pattern, answer in routes:
            match = pattern.fullmatch(path)
            if match:
                return answer(request, match.groupdict())
        return Response(
            404, [("Content-Type", "text/plain"), ("Content-Length", "19")], b"404 page not found\n"
        )

    def _authenticate(self, request: Request) -> None:
        users = self.options.htpasswd
        if users is not None and not users.check(request.header("authorization")):
            raise RegistryProblem("UNAUTHORIZED", "authentication required", headers=[CHALLENGE])

    # -- repositories and tags -----------------------------------------------------------

    def _repository(self, name: str) -> str:
        if name.startswith(self.options.repository_prefix) and name in self._repositories():
            return name
        raise RegistryProblem("NAME_UNKNOWN", f"repository name not known to registry: {name}")

    def _repositories(self) -> list[str]:
        prefix = self.options.repository_prefix
        return sorted(r for r in self.catalog.repositories() if r.startswith(prefix))

    def _catalog(self, request: Request) -> Response:
        names, link = _page(self._repositories(), request, "/v2/_catalog")
        return json_response(200, {"repositories": names}, link)

    def _tags(self, request: Request, match: dict[str, str]) -> Response:
        name = self._repository(match["name"])
        live = sorted(
            s.tag for s in self.catalog.tags(name, self.options.at) if s.action is Action.PUSH
        )
        tags, link = _page(live, request, f"/v2/{name}/tags/list")
        return json_response(200, {"name": name, "tags": tags}, link)

    # -- manifests -----------------------------------------------------------------------

    def _manifest(self, request: Request, match: dict[str, str]) -> Response:
        name = self._repository(match["name"])
        reference = match["reference"]
        if ":" in reference:
            digest = _digest(reference, "MANIFEST_UNKNOWN")
            if self.contents.manifest_size(name, digest) is None:
                raise _manifest_unknown(f"{name}@{reference}")
        else:
            digest = self._resolve_tag(name, reference)
        try:
            manifest = self.catalog.reader.manifest(digest)
        except DigestMismatchError as e:
            raise _tampered(digest, e) from e
        except (NotFoundError, InvalidInputError) as e:
            raise _manifest_unknown(f"{name}@{digest}") from e
        return Response(
            200,
            [
                ("Content-Type", manifest.media_type),
                ("Content-Length", str(manifest.size)),
                ("Docker-Content-Digest", str(digest)),
                ("Etag", f'"{digest}"'),
            ],
            manifest.raw,
        )

    def _resolve_tag(self, name: str, tag: str) -> Digest:
        try:
            return self.catalog.resolve(ImageRef(name, tag), self.options.at).digest
        except NotFoundError as e:
            raise _manifest_unknown(f"{name}:{tag}" + self._when()) from e
        except InvalidInputError as e:
            raise _manifest_unknown(f"{name}:{tag}") from e

    def _when(self) -> str:
        at = self.options.at
        return f" at {rfc3339(at)}" if at else ""

    # -- blobs ---------------------------------------------------------------------------

    def _blob(self, request: Request, match: dict[str, str]) -> Response:
        name = self._repository(match["name"])
        digest = _digest(match["digest"], "BLOB_UNKNOWN")
        size = self.contents.blob_size(name, digest)
        if size is None:
            raise RegistryProblem("BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
        reader = self.catalog.reader
        try:
            # Thorough: the version is chosen by its hash before a byte is handed out, since
            # a redirected client reads it without us, and a range cannot be checked.
            version = reader.locate(digest, size=size, thorough=True)
        except DigestMismatchError as e:
            raise _tampered(digest, e) from e
        except NotFoundError as e:
            raise RegistryProblem("BLOB_UNKNOWN", f"blob unknown to registry: {digest}") from e
        headers = [("Docker-Content-Digest", str(digest)), ("Etag", f'"{digest}"')]
        if request.method == "HEAD":
            return Response(
                200,
                [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Length", str(size)),
                    *self._accept_ranges(),
                    *headers,
                ],
            )
        if self.options.blobs == "redirect":
            url = self.objects.presigned_get(digest, version, self.options.presign_seconds)
            return Response(307, [("Location", url), ("Content-Length", "0"), *headers])
        return self._stream(request, digest, size, version, headers)

    def _accept_ranges(self) -> list[tuple[str, str]]:
        return [("Accept-Ranges", "bytes")] if self.options.blobs == "stream" else []

    def _stream(
        self,
        request: Request,
        digest: Digest,
        size: int,
        version: str | None,
        headers: list[tuple[str, str]],
    ) -> Response:
        try:
            wanted = byte_range(request.header("range"), size)
        except Unsatisfiable:
            return Response(
                416,
                [("Content-Range", f"bytes */{size}"), ("Content-Length", "0"), *headers],
            )
        resources = ExitStack()
        body: Readable
        try:
            if wanted is None:
                body = resources.enter_context(self.catalog.reader.open_blob(digest, size))
                status, length, extra = 200, size, []
            else:
                first, last = wanted
                body = resources.enter_context(
                    self.objects.open(digest, version_id=version, byte_range=(first, last))
                )
                status, length = 206, last - first + 1
                extra = [("Content-Range", f"bytes {first}-{last}/{size}")]
        except BaseException:
            resources.close()
            raise

        def chunks() -> Iterator[bytes]:
            # A digest mismatch on the last chunk raises here: the server then cuts the
            # connection, so the client never takes a short or wrong blob as complete.
            while data := body.read(SERVE_CHUNK):
                yield data

        return Response(
            status,
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(length)),
                ("Accept-Ranges", "bytes"),
                *extra,
                *headers,
            ],
            stream=BodyStream(chunks(), resources),
        )

    # -- referrers -----------------------------------------------------------------------

    def _referrers(self, request: Request, match: dict[str, str]) -> Response:
        name = self._repository(match["name"])
        subject = _digest(match["digest"], "DIGEST_INVALID", invalid_only=True)
        wanted = request.param("artifactType")
        descriptors: list[dict[str, object]] = []
        for digest in self.catalog.direct_referrers(name, subject):
            try:
                manifest = self.catalog.reader.manifest(digest)
            except (DataError, InvalidInputError) as e:
                log.warning("referrer %s of %s not listed: %s", digest, subject, e.one_line())
                continue
            if wanted is not None and manifest.artifact_type != wanted:
                continue
            descriptor: dict[str, object] = {
                "mediaType": manifest.media_type,
                "digest": str(digest),
                "size": manifest.size,
            }
            if manifest.artifact_type:
                descriptor["artifactType"] = manifest.artifact_type
            if manifest.content.annotations:
                descriptor["annotations"] = manifest.content.annotations
            descriptors.append(descriptor)
        index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": descriptors}
        response = json_response(200, index)
        response.headers[0] = ("Content-Type", mediatypes.OCI_INDEX)
        if wanted is not None:
            response.headers.append(("OCI-Filters-Applied", "artifactType"))
        return response


# -- helpers -------------------------------------------------------------------------------


def _digest(text: str, unknown_code: str, *, invalid_only: bool = False) -> Digest:
    """The digest a path names. Malformed: DIGEST_INVALID. Well formed but of another
    algorithm (only sha256 is stored): `unknown_code`, as for any digest not held."""
    try:
        return Digest.parse(text)
    except InvalidInputError as e:
        if _DIGEST.fullmatch(text) and not text.startswith("sha256:") and not invalid_only:
            raise RegistryProblem(unknown_code, f"{text} is not in this registry") from e
        raise RegistryProblem("DIGEST_INVALID", f"invalid digest {text!r}: {e}") from e


def _manifest_unknown(what: str) -> RegistryProblem:
    return RegistryProblem("MANIFEST_UNKNOWN", f"manifest unknown: {what}")


def _tampered(digest: Digest, error: DigestMismatchError) -> RegistryProblem:
    log.error("refusing %s: %s", digest, error.one_line())
    return RegistryProblem(
        "DENIED", f"{digest} is refused: no stored version of it hashes to its digest"
    )


def _page(items: list[str], request: Request, path: str) -> tuple[list[str], list[tuple[str, str]]]:
    """One page of sorted `items` after `last`, at most `n` (capped), and the Link header
    to the next page when more remain, as CNCF distribution writes it."""
    n_text = request.param("n")
    last = request.param("last")
    after = [i for i in items if last is None or i > last]
    if n_text is None or n_text == "":
        return after, []
    if not n_text.isdigit():
        raise RegistryProblem("PAGINATION_NUMBER_INVALID", f"invalid number of results: {n_text}")
    n = min(int(n_text), SERVE_MAX_PAGE)
    page = after[:n]
    if n == 0 or len(after) <= n:
        return page, []
    link = f'<{path}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
    return page, [("Link", link)]


class Unsatisfiable(Exception):
    """A range that starts past the blob's end: 416, with the blob's size."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range of a blob of `size` bytes: (first, last) inclusive; None for
    the whole blob (no header, or one RFC 9110 lets us ignore: several ranges, invalid)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        first, last = max(0, size - int(last_text)), size - 1
        if int(last_text) == 0:
            raise Unsatisfiable
    else:
        first = int(first_text)
        last = min(int(last_text), size - 1) if last_text else size - 1
        if first >= size:
            raise Unsatisfiable
    return (first, last) if last >= first else None


def metrics_of(request: Request, response: Response) -> list[str]:
    """The counters a request adds to (the function's CloudWatch metrics): Requests, Pulls
    (a manifest asked for by tag, as a pull starts), ManifestsServed, Redirects,
    ClientErrors (4xx) and ServerErrors (5xx)."""
    names = ["Requests"]
    if response.status >= 500:
        names.append("ServerErrors")
    elif response.status >= 400:
        names.append("ClientErrors")
    elif response.status == 307:
        names.append("Redirects")
    match = _MANIFEST.fullmatch(request.path)
    if match and response.status == 200:
        if request.method == "GET":
            names.append("ManifestsServed")
        if ":" not in match["reference"]:
            names.append("Pulls")
    return names
