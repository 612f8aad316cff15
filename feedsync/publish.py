"""The hotline's side: build and sign a TUF repository whose target is the takedown bundle.

    hotline-edge feed keygen --out keys/ root targets-1 targets-2 snapshot timestamp
    hotline-edge feed publish --repo repo/ --keys keys/ --feed hk-hotline --orders orders.csv \\
        --threshold targets=2

Layout (consistent snapshots, as python-tuf's ngclient reads it):

    repo/metadata/1.root.json, 2.root.json, ...   every root version (clients walk N -> N+1)
    repo/metadata/root.json                       the current root (deliver it to nodes out of band)
    repo/metadata/timestamp.json                  short expiry: freeze detection
    repo/metadata/<v>.snapshot.json, <v>.targets.json
    repo/targets/<sha256>.takedowns.json          the bundle (feedsync.bundle format)

Keys are Ed25519 PKCS#8 PEM files (``<name>.key``, mode 0600) with the public half beside them
(``<name>.pub``). The role of a key comes from its file name prefix: ``root*``, ``targets*``,
``snapshot*``, ``timestamp*``. Publishing signs with every key of a role found in the keys folder.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from . import bundle as bfmt
from .errors import PublishError
from .store import atomic_write

ROLES = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 30, "timestamp": 7}


def keygen(out_dir: str, name: str) -> tuple[str, str]:
    """A new Ed25519 key pair: ``<name>.key`` (0600) and ``<name>.pub``. Never overwrites."""
    os.makedirs(out_dir, exist_ok=True)
    key_path = os.path.join(out_dir, f"{name}.key")
    pub_path = os.path.join(out_dir, f"{name}.pub")
    if os.path.exists(key_path):
        raise PublishError(f"{key_path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    atomic_write(pub_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def load_signer(path: str) -> CryptoSigner:
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: cannot read the private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PublishError(f"{path}: not an Ed25519 key")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def signers_from_dir(keys_dir: str) -> dict[str, list[CryptoSigner]]:
    """Role -> signers, from ``<role>*.key`` files."""
    out: dict[str, list[CryptoSigner]] = {r: [] for r in ROLES}
    for role in ROLES:
        for path in sorted(glob.glob(os.path.join(keys_dir, f"{role}*.key"))):
            out[role].append(load_signer(path))
    return out


def _expiry(now: datetime, days: float) -> datetime:
    return (now + timedelta(days=days)).replace(microsecond=0)


@dataclass
class Repository:
    """A TUF repository folder of the publish tool."""

    path: str

    @property
    def meta(self) -> str:
        return os.path.join(self.path, "metadata")

    @property
    def targets_dir(self) -> str:
        return os.path.join(self.path, "targets")

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.meta, "root.json"))

    def _load(self, name: str) -> Metadata:  # type: ignore[type-arg]
        try:
            return Metadata.from_file(os.path.join(self.meta, name))
        except (OSError, DeserializationError) as exc:
            raise PublishError(f"{os.path.join(self.meta, name)}: {exc}") from exc

    def _write(self, md: Metadata, names: Sequence[str]) -> None:  # type: ignore[type-arg]
        data = md.to_bytes()
        for n in names:
            atomic_write(os.path.join(self.meta, n), data)

    @staticmethod
    def _sign(md: Metadata, signers: Sequence[CryptoSigner]) -> None:  # type: ignore[type-arg]
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)

    def init(self, signers: Mapping[str, Sequence[CryptoSigner]], thresholds: Mapping[str, int],
             now: datetime, expiry_days: Mapping[str, float] | None = None) -> None:
        """Root version 1 trusting the given keys per role; empty targets."""
        if self.exists():
            raise PublishError(f"{self.path} already holds a repository")
        days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}
        os.makedirs(self.meta, exist_ok=True)
        os.makedirs(self.targets_dir, exist_ok=True)
        root = Root(expires=_expiry(now, days["root"]), consistent_snapshot=True)
        for role in ROLES:
            if not signers.get(role):
                raise PublishError(f"no {role} key (a file named {role}*.key in the keys folder)")
            for s in signers[role]:
                root.add_key(s.public_key, role)
            root.roles[role].threshold = thresholds.get(role, 1)
            if root.roles[role].threshold > len(signers[role]):
                raise PublishError(f"{role} threshold {root.roles[role].threshold} is more than the "
                                   f"{len(signers[role])} key(s) given")
        md = Metadata(root)
        self._sign(md, signers["root"])
        self._write(md, ["1.root.json", "root.json"])

    def publish(self, bundle: bytes, sequence: int, signers: Mapping[str, Sequence[CryptoSigner]],
                *, now: datetime, target_name: str = "takedowns.json",
                expiry_days: Mapping[str, float] | None = None, fmt: str = bfmt.FORMAT_COLUMNS) -> int:
        """Add the bundle as the target; new targets, snapshot and timestamp versions. Returns the
        targets version."""
        days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}
        prev = self._load("targets.json").signed.version if os.path.exists(
            os.path.join(self.meta, "targets.json")) else 0
        tgt = Targets(version=prev + 1, expires=_expiry(now, days["targets"]))
        tf = TargetFile.from_data(target_name, bundle, ["sha256"])
        tf.unrecognized_fields["custom"] = {"sequence": sequence, "format": fmt}
        tgt.targets[target_name] = tf
        tmd = Metadata(tgt)
        self._sign(tmd, signers["targets"])
        os.makedirs(self.targets_dir, exist_ok=True)
        sub = os.path.dirname(target_name)
        base = os.path.basename(target_name)
        tdir = os.path.join(self.targets_dir, sub)
        os.makedirs(tdir, exist_ok=True)
        atomic_write(os.path.join(tdir, f"{tf.hashes['sha256']}.{base}"), bundle)
        self._write(tmd, [f"{tgt.version}.targets.json", "targets.json"])
        self._bump_snapshot(tgt.version, signers, now, days)
        return tgt.version

    def _bump_snapshot(self, targets_version: int, signers: Mapping[str, Sequence[CryptoSigner]],
                       now: datetime, days: Mapping[str, float]) -> None:
        prev = self._load("snapshot.json").signed.version if os.path.exists(
            os.path.join(self.meta, "snapshot.json")) else 0
        snap = Snapshot(version=prev + 1, expires=_expiry(now, days["snapshot"]))
        snap.meta["targets.json"] = MetaFile(version=targets_version)
        smd = Metadata(snap)
        self._sign(smd, signers["snapshot"])
        self._write(smd, [f"{snap.version}.snapshot.json", "snapshot.json"])
        self.timestamp(snap.version, signers, now, days)

    def timestamp(self, snapshot_version: int | None, signers: Mapping[str, Sequence[CryptoSigner]],
                  now: datetime, days: Mapping[str, float] | None = None) -> None:
        """A new timestamp (the hotline re-signs it often so that nodes can detect a freeze)."""
        d = {**DEFAULT_EXPIRY_DAYS, **(days or {})}
        prev = self._load("timestamp.json").signed.version if os.path.exists(
            os.path.join(self.meta, "timestamp.json")) else 0
        if snapshot_version is None:
            snapshot_version = self._load("snapshot.json").signed.version
        ts = Timestamp(version=prev + 1, expires=_expiry(now, d["timestamp"]),
                       snapshot_meta=MetaFile(version=snapshot_version))
        md = Metadata(ts)
        self._sign(md, signers["timestamp"])
        self._write(md, ["timestamp.json"])

    def rotate(self, role: str, new_signers: Sequence[CryptoSigner], threshold: int, *,
               old_root_signers: Sequence[CryptoSigner], new_root_signers: Sequence[CryptoSigner] | None,
               now: datetime) -> int:
        """Replace the keys of ``role`` in a new root version, signed by the old root keys and (for a
        root rotation) the new ones too (TUF spec 5.3.4). Returns the new root version."""
        md = self._load("root.json")
        root: Root = md.signed
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        for s in new_signers:
            root.add_key(s.public_key, role)
        root.roles[role].threshold = threshold
        root.version += 1
        root.expires = _expiry(now, DEFAULT_EXPIRY_DAYS["root"])
        signers = list(old_root_signers) + list(new_root_signers or [])
        self._sign(md, signers)
        self._write(md, [f"{root.version}.root.json", "root.json"])
        return root.version

    def resign(self, signers: Mapping[str, Sequence[CryptoSigner]], now: datetime,
               expiry_days: Mapping[str, float] | None = None) -> int:
        """Re-sign the current targets (same bundle) as a new version, then snapshot and timestamp:
        what follows a key rotation, so that clients see the new keys at work."""
        days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}
        md = self._load("targets.json")
        tgt: Targets = md.signed
        tgt.version += 1
        tgt.expires = _expiry(now, days["targets"])
        self._sign(md, signers["targets"])
        self._write(md, [f"{tgt.version}.targets.json", "targets.json"])
        self._bump_snapshot(tgt.version, signers, now, days)
        return tgt.version

    def current_sequence(self) -> int:
        if not os.path.exists(os.path.join(self.meta, "targets.json")):
            return 0
        tgt = self._load("targets.json").signed
        best = 0
        for tf in tgt.targets.values():
            seq = tf.custom.get("sequence") if isinstance(tf.custom, dict) else None
            if isinstance(seq, int):
                best = max(best, seq)
        return best


def publish_orders(repo_dir: str, keys_dir: str, feed: str, orders: bytes, orders_source: str, *,
                   now: datetime | None = None, thresholds: Mapping[str, int] | None = None,
                   sequence: int | None = None, target_name: str = "takedowns.json",
                   expiry_days: Mapping[str, float] | None = None, columns: bool = True) -> tuple[int, int, int]:
    """Read orders (CSV/JSON), build the bundle, sign and write it. Returns (sequence, targets
    version, entries). Creates the repository on first use."""
    when = now or datetime.now(UTC)
    rows = bfmt.read_orders(orders, orders_source)
    signers = signers_from_dir(keys_dir)
    repo = Repository(repo_dir)
    if not repo.exists():
        repo.init(signers, thresholds or {}, when, expiry_days)
    seq = sequence if sequence is not None else repo.current_sequence() + 1
    data = bfmt.dump_bundle(feed, seq, int(when.timestamp()), rows, columns=columns)
    version = repo.publish(data, seq, signers, now=when, target_name=target_name, expiry_days=expiry_days,
                           fmt=bfmt.FORMAT_COLUMNS if columns else bfmt.FORMAT)
    return seq, version, len(rows)
