"""The signed takedown bundle over HTTP(S): python-tuf's ``ngclient.Updater`` does the verifying.

TUF gives threshold signatures, key rotation (root N+1 signed by N and N+1), expiry (freeze
detection), rollback protection (versions never go down) and mix-and-match protection (snapshot
pins every targets version, the target's length and hashes are signed). The trusted state is
persisted by ngclient under ``<feed_dir>/tuf/``; the trusted root the operator installed
(``trusted_root``) is always passed as ``bootstrap``. One Updater per cycle, one cycle at a time per
feed (the feed lock), as ngclient asks.

python-tuf's errors become refusal codes here, where they enter:

    | tuf.api.exceptions                              | refusal                      |
    |-------------------------------------------------|------------------------------|
    | UnsignedMetadataError                           | FEED_UNTRUSTED_SIGNATURE     |
    | BadVersionNumberError "must be >="              | FEED_ROLLBACK                |
    | BadVersionNumberError (other), RepositoryError  | FEED_INCONSISTENT            |
    | ExpiredMetadataError                            | FEED_EXPIRED                 |
    | LengthOrHashMismatchError, DeserializationError | FEED_INTEGRITY               |
    | DownloadLengthMismatchError; target > max_bytes | FEED_TOO_LARGE               |
    | DownloadHTTPError, DownloadError, OSError       | FEED_UNREACHABLE (no version seen) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tuf.api import exceptions as tufx
from tuf.api.metadata import Metadata, Root, Targets  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig  # type: ignore[attr-defined]
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from .config import FeedConfig
from .errors import FeedRefused, FetchFailed, RefusalCode


@dataclass(frozen=True, slots=True)
class FetchedBundle:
    data: bytes
    sequence: int | None          # the signed target's custom "sequence"
    targets_version: int
    signer_keys: tuple[str, ...]  # key ids whose signatures on targets verified


def base_urls(feed: FeedConfig) -> tuple[str, str]:
    base = feed.url if feed.url.endswith("/") else feed.url + "/"
    targets = feed.targets_url or base + "targets/"
    return base + "metadata/", targets if targets.endswith("/") else targets + "/"


def translate(exc: BaseException, feed: FeedConfig, serial: int | None) -> FeedRefused | FetchFailed:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, tufx.UnsignedMetadataError):
        return FeedRefused(RefusalCode.UNTRUSTED_SIGNATURE, feed.name, serial, "signatures", text)
    if isinstance(exc, tufx.BadVersionNumberError):
        code = RefusalCode.ROLLBACK if "must be >=" in str(exc) else RefusalCode.INCONSISTENT
        return FeedRefused(code, feed.name, serial, "version", text)
    if isinstance(exc, tufx.ExpiredMetadataError):
        return FeedRefused(RefusalCode.EXPIRED, feed.name, serial, "expiry", text)
    if isinstance(exc, tufx.LengthOrHashMismatchError | DeserializationError):
        return FeedRefused(RefusalCode.INTEGRITY, feed.name, serial, "hash", text)
    if isinstance(exc, tufx.DownloadLengthMismatchError):
        return FeedRefused(RefusalCode.TOO_LARGE, feed.name, serial, "length", text)
    if isinstance(exc, tufx.RepositoryError):
        return FeedRefused(RefusalCode.INCONSISTENT, feed.name, serial, "metadata", text)
    return FetchFailed(feed.name, feed.url, text)


class BundleSource:
    def __init__(self, feed: FeedConfig, feed_dir: str, timeout: int = 30) -> None:
        self.feed = feed
        self.dir = os.path.join(feed_dir, "tuf")
        self.timeout = timeout

    def _root(self) -> bytes:
        try:
            with open(self.feed.trusted_root, "rb") as f:
                return f.read()
        except OSError as exc:
            raise FetchFailed(self.feed.name, self.feed.trusted_root, f"cannot read the trusted root: {exc}") from exc

    def fetch(self) -> FetchedBundle:
        meta_url, targets_url = base_urls(self.feed)
        os.makedirs(os.path.join(self.dir, "targets"), exist_ok=True)
        cfg = UpdaterConfig(targets_max_length=min(self.feed.max_bytes, 50_000_000))
        try:
            up = Updater(self.dir, meta_url, os.path.join(self.dir, "targets"), targets_url,
                         Urllib3Fetcher(socket_timeout=self.timeout), cfg, bootstrap=self._root())
            up.refresh()
            info = up.get_targetinfo(self.feed.target)
            if info is None:
                raise FeedRefused(RefusalCode.INTEGRITY, self.feed.name, None, "target",
                                  f"the signed targets do not list {self.feed.target!r}")
            seq = info.custom.get("sequence") if isinstance(info.custom, dict) else None
            seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
            if info.length > self.feed.max_bytes:
                raise FeedRefused(RefusalCode.TOO_LARGE, self.feed.name, seq, "max_bytes",
                                  f"the bundle is {info.length} bytes, the cap is {self.feed.max_bytes}")
            path = up.find_cached_target(info) or up.download_target(info)
            with open(path, "rb") as f:
                data = f.read()
        except (FeedRefused, FetchFailed):
            raise
        except (tufx.RepositoryError, tufx.DownloadError, OSError) as exc:
            raise translate(exc, self.feed, None) from exc
        version, signers = self._signers()
        return FetchedBundle(data, seq, version, signers)

    def _signers(self) -> tuple[int, tuple[str, ...]]:
        """Key ids of the targets role whose signatures are on the trusted targets metadata."""
        try:
            root = Metadata[Root].from_file(os.path.join(self.dir, "root.json")).signed
            md = Metadata[Targets].from_file(os.path.join(self.dir, "targets.json"))
        except (OSError, DeserializationError):
            return 0, ()
        result = root.get_verification_result("targets", md.signed_bytes, md.signatures)
        return md.signed.version, tuple(sorted(result.signed))
