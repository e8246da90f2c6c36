"""Image-file datasets (`dataset.image`): listing an image folder, a manifest of paths, or a generated set.

What ingest gets is a frame of references, one row per image: `IMAGE_COLUMN` (an absolute local path
or a URI) and the label; nothing is decoded. Its fingerprint covers every file cheaply, from the
listing alone: relative path, size and modification time for local files, ETag (or VersionId) for
objects, so an edited, added or removed image changes the ingest cache key without reading pixels.

    folder     root/<class>/**/*.png|jpg|jpeg|webp|bmp   (torchvision's ImageFolder layout; local or URI)
    manifest   a .csv/.parquet with `path_column` and the label column; relative paths are relative
               to the manifest's own location
    generated  generated:shapes[?per_class=N&seed=S]     written at ingest (mlplat.datasets.shapes)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pandas as pd

from mlplat.errors import UsageError
from mlplat.images import IMAGE_COLUMN, IMAGE_EXTENSIONS
from mlplat.sources import OBJECT_STORES, Fingerprint, filesystem, is_remote, local_path, object_tag, scheme

GENERATED = "generated:"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_LABEL = "label"  # an image folder's label column (the class directory's name); a manifest's default


def is_manifest(source: str) -> bool:
    return Path(urlparse(source).path if is_remote(source) else source).suffix.lower() in MANIFEST_SUFFIXES


def read_images(source: str, label: str | None, path_column: str, base_dir: Path, write_to: Path | None = None,
                field: str = "dataset.source") -> tuple[pd.DataFrame, str, Fingerprint]:
    """(frame of IMAGE_COLUMN and label, the label's name, the listing's fingerprint). A generated source
    is written under `write_to` (ingest's output directory) first."""
    if source.startswith(GENERATED):
        if write_to is None:
            raise ValueError("a generated image source needs a directory to write to")
        name, options = _generated(source, field)
        from mlplat.datasets.shapes import write_shapes

        root = write_to / "images"
        files = write_shapes(root, per_class=options["per_class"], seed=options["seed"])
        frame = pd.DataFrame({IMAGE_COLUMN: [str(f) for f in files], DEFAULT_LABEL: [f.parent.name for f in files]})
        return frame, DEFAULT_LABEL, generated_fingerprint(source, field)
    if is_manifest(source):
        return _read_manifest(source, label or DEFAULT_LABEL, path_column, base_dir, field)
    return _read_folder(source, base_dir, field)


def listing_fingerprint(source: str, label: str | None, path_column: str, base_dir: Path,
                        field: str = "dataset.source") -> Fingerprint:
    """The fingerprint `read_images` would record, without writing anything (a KFP run's ingest cache key)."""
    if source.startswith(GENERATED):
        return generated_fingerprint(source, field)
    return read_images(source, label, path_column, base_dir, None, field)[2]


def generated_fingerprint(source: str, field: str = "dataset.source") -> Fingerprint:
    from mlplat.datasets.shapes import VERSION

    name, options = _generated(source, field)
    return Fingerprint(source, "builtin", f"mlplat.datasets.{name} v{VERSION} " +
                       " ".join(f"{k}={v}" for k, v in sorted(options.items())))


def _generated(source: str, field: str) -> tuple[str, dict[str, int]]:
    name, _, query = source.removeprefix(GENERATED).partition("?")
    if name != "shapes":
        raise UsageError(f"{field}: unknown generated dataset {name!r}; available: shapes")
    options: dict[str, int] = {"per_class": 200, "seed": 0}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in options:
            raise UsageError(f"{field}: generated:shapes takes per_class and seed, not {key!r}")
        try:
            options[key] = int(value)
        except ValueError:
            raise UsageError(f"{field}: generated:shapes {key}={value!r} is not an integer") from None
    if not 2 <= options["per_class"] <= 100_000:
        raise UsageError(f"{field}: generated:shapes per_class must be between 2 and 100000, got {options['per_class']}")
    return name, options


def _digest(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def _read_folder(source: str, base_dir: Path, field: str) -> tuple[pd.DataFrame, str, Fingerprint]:
    """root/<class>/...: each class directory's images (searched recursively, as ImageFolder does), sorted."""
    rows: list[tuple[str, str]] = []  # (location, class)
    stats: list[str] = []
    if is_remote(source):
        if scheme(source) not in OBJECT_STORES:
            raise UsageError(f"{field}: an image folder must be a local directory or an object store prefix "
                             f"(s3://, gs://), not {source}")
        fs, root = filesystem(source)
        try:
            found = fs.find(root, detail=True)
        except Exception as exc:
            raise UsageError(f"{field}: cannot list {source}: {type(exc).__name__}: {exc}") from None
        prefix = scheme(source) + "://"
        for path, info in sorted(found.items()):
            relative = path[len(root.rstrip("/")) + 1:]
            if "/" not in relative or not _is_image(relative):
                continue
            rows.append((prefix + path, relative.split("/", 1)[0]))
            stats.append(f"{relative}\t{info.get('size')}\t{object_tag(info)}")
    else:
        root_path = local_path(source, base_dir, field)
        if not root_path.is_dir():
            raise UsageError(f"{field}: image folder not found: {root_path} (dataset.image expects root/<class>/*.png, "
                             "a .csv/.parquet manifest, or generated:shapes)")
        for class_dir in sorted(p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file() and _is_image(path.name):
                    stat = path.stat()
                    rows.append((str(path), class_dir.name))
                    stats.append(f"{path.relative_to(root_path).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}")
    if not rows:
        raise UsageError(f"{field}: no images in {source} (expected root/<class>/*{'|'.join(IMAGE_EXTENSIONS)})")
    frame = pd.DataFrame(rows, columns=[IMAGE_COLUMN, DEFAULT_LABEL])
    return frame, DEFAULT_LABEL, Fingerprint(source, "listing", _digest(stats), len(rows))


def _read_manifest(source: str, label: str, path_column: str, base_dir: Path,
                   field: str) -> tuple[pd.DataFrame, str, Fingerprint]:
    from mlplat.data import read_frame

    table, fetched = read_frame(source, base_dir, field)
    for column, where in ((path_column, "dataset.image.path_column"), (label, "dataset.label")):
        if column not in table.columns:
            raise UsageError(f"{where}: column {column!r} not in {fetched.name} (columns: {', '.join(map(str, table.columns))})")
    paths = table[path_column]
    if paths.isna().any():
        raise UsageError(f"dataset.image.path_column: {int(paths.isna().sum())} rows of {fetched.name} have no path")
    parent = str(fetched.local_path.parent) if fetched.local_path else fetched.uri.rsplit("/", 1)[0]
    locations = [_beside(str(p), parent) for p in paths]
    remote = _remote_listings(locations, field)
    stats = [f"manifest\t{fetched.fingerprint.key}"] + [f"{loc}\t{_stat(loc, field, i, remote)}" for i, loc in enumerate(locations)]
    frame = pd.DataFrame({IMAGE_COLUMN: locations, label: table[label].to_numpy()})
    return frame, label, Fingerprint(source, "listing", _digest(stats), len(locations))


def _beside(path: str, parent: str) -> str:
    """A manifest's path: a URI or absolute path as it is, a relative one under the manifest's location."""
    if scheme(path) or os.path.isabs(path):
        return path
    return f"{parent.rstrip('/')}/{path}" if is_remote(parent) else str(Path(parent) / path)


def _remote_listings(locations: list[str], field: str) -> dict[str, dict[str, Any]]:
    """The object-store entries of every directory the manifest's remote images sit in, keyed by URI: one
    listing per directory, not one request per image (a manifest of 100,000 objects in one prefix)."""
    by_directory: dict[tuple[str, str], set[str]] = {}
    for location in locations:
        if scheme(location) in OBJECT_STORES:
            by_directory.setdefault((scheme(location), location.rsplit("/", 1)[0]), set()).add(location)
    found: dict[str, dict[str, Any]] = {}
    filesystems: dict[str, Any] = {}
    for (kind, directory), wanted in by_directory.items():
        if kind not in filesystems:
            filesystems[kind] = filesystem(directory)[0]
        fs = filesystems[kind]
        try:
            entries = fs.ls(fs._strip_protocol(directory), detail=True)
        except FileNotFoundError:
            continue  # each of its images is then named missing, by row
        except Exception as exc:
            raise UsageError(f"{field}: cannot list {directory}: {type(exc).__name__}: {exc}") from None
        for entry in entries:
            uri = f"{kind}://{entry['name']}"
            if uri in wanted:
                found[uri] = entry
    return found


def _stat(location: str, field: str, row: int, listed: dict[str, dict[str, Any]]) -> str:
    """One file's size and change marker (mtime, or the object's ETag/VersionId); a missing file names its row."""
    try:
        if not is_remote(location):
            stat = Path(local_path(location)).stat()
            return f"{stat.st_size}\t{stat.st_mtime_ns}"
        if scheme(location) in OBJECT_STORES:
            if location not in listed:
                raise FileNotFoundError(location)
            info = listed[location]
        else:
            fs, path = filesystem(location)
            info = fs.info(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"{field}: manifest row {row}: image not found: {location}") from None
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{field}: manifest row {row}: cannot read {location}: {type(exc).__name__}: {exc}") from None
    return f"{info.get('size')}\t{object_tag(info) or info.get('mtime') or ''}"
