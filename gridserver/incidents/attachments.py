"""Attachments (照片/视频): photos and videos uploaded with a report or a step.

* Limits: images (JPEG, PNG, WebP, HEIC) up to ``MAX_IMAGE`` bytes, videos (MP4/MOV) up to
  ``MAX_VIDEO``; the type is checked from the file's magic bytes, not only its declared type.
* Storage behind one small interface (``Storage``: put/get by key); ``DiskStorage`` keeps files under
  ``$GRIDSERVER_HOME/attachments/<sha256[:2]>/<sha256>`` (content-addressed, so a retried upload
  stores nothing twice). An object store would implement the same two methods.
* EXIF GPS (JPEG APP1 ``Exif`` → GPS IFD) is read when present, with a small parser of our own
  (no imaging library needed): latitude/longitude as decimal WGS84 degrees.
* Thumbnails (Pillow): a JPEG of at most ``THUMB_SIZE`` px, made when a photo is stored (and on
  first request for photos stored before), turned upright by its EXIF orientation and written
  WITHOUT any EXIF (so no GPS). Keyed by the photo's digest (``thumbs/<sha[:2]>/<sha>-<size>.jpg``):
  the same photo has one thumbnail, and no database column is needed. JPEG/PNG/WebP only (Pillow
  does not decode HEIC); videos and undecodable images have none (``thumbnail()`` → None).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from pathlib import Path

from gridserver.errors import InvalidInput

MAX_IMAGE = 10 * 1024 * 1024
MAX_VIDEO = 50 * 1024 * 1024
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/heic"}
VIDEO_TYPES = {"video/mp4", "video/quicktime"}


def sniff(data: bytes) -> str | None:
    """The media type from magic bytes (None when not a supported photo/video)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/mp4"
    return None


def check(filename: str, declared: str | None, data: bytes) -> str:
    """Validate an upload; returns its media type or raises InvalidInput (422) saying what is wrong."""
    kind = sniff(data)
    if kind is None:
        raise InvalidInput(f"附件 {filename!r} 不是支持的照片或视频 is not a supported photo/video "
                           f"(declared {declared!r}); allowed: JPEG, PNG, WebP, HEIC, MP4, MOV", code="unsupported_media")
    limit = MAX_IMAGE if kind in IMAGE_TYPES else MAX_VIDEO
    if len(data) > limit:
        raise InvalidInput(f"附件 {filename!r} 太大 is {len(data):,} bytes; {kind} may be at most {limit:,} bytes",
                           code="too_large", status=413)
    if len(data) == 0:
        raise InvalidInput(f"附件 {filename!r} is empty")
    return kind


class Storage:
    """Where attachment bytes live: put returns a (content) key, put_at writes a given key, get returns
    the bytes (FileNotFoundError when the key holds nothing)."""

    def put(self, data: bytes) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def put_at(self, key: str, data: bytes) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def get(self, key: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class DiskStorage(Storage):
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if ".." in key or key.startswith("/"):
            raise InvalidInput(f"bad storage key {key!r}")
        return self.root / key

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        return self.put_at(f"{digest[:2]}/{digest}", data)

    def put_at(self, key: str, data: bytes) -> str:
        path = self._path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a reader never sees half a file, concurrent writers are safe
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()


def storage() -> Storage:
    from gridserver.settings import get_settings

    return DiskStorage(get_settings().home / "attachments")


# --- thumbnails -----------------------------------------------------------------------------------
THUMB_SIZE = 320
THUMB_TYPES = {"image/jpeg", "image/png", "image/webp"}
#: Refuse to decode more pixels than this (a 10 MB PNG can claim billions: a decompression bomb).
MAX_PIXELS = 50_000_000


def thumbnail_key(sha256: str) -> str:
    return f"thumbs/{sha256[:2]}/{sha256}-{THUMB_SIZE}.jpg"


def thumbnail_url(incident_id: int, attachment_id: int) -> str:
    return f"/api/v1/incidents/{incident_id}/attachments/{attachment_id}/thumbnail"


def make_thumbnail(data: bytes) -> bytes | None:
    """A JPEG ≤ THUMB_SIZE px on its longer side, upright (EXIF orientation applied), with no EXIF or
    other metadata; None when the image cannot be decoded (or is too large to decode safely)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                return None
            im.draft("RGB", (THUMB_SIZE * 2, THUMB_SIZE * 2))  # JPEG: decode at a reduced scale (fast)
            im = ImageOps.exif_transpose(im)  # reads the orientation tag before it is dropped
            im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            elif im.mode != "RGB":
                im = im.convert("RGB")
            out = io.BytesIO()
            im.save(out, "JPEG", quality=80, optimize=True)  # no exif= / icc_profile=: nothing carried over
            return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, struct.error):
        return None


def ensure_thumbnail(store: Storage, sha256: str, content_type: str, data: bytes | None = None,
                     key: str | None = None) -> bytes | None:
    """The stored thumbnail of a photo, made (from ``data``, else read from ``key``) and stored when
    missing; None for videos, HEIC and undecodable images."""
    if content_type not in THUMB_TYPES:
        return None
    tkey = thumbnail_key(sha256)
    try:
        return store.get(tkey)
    except FileNotFoundError:
        pass
    thumb = make_thumbnail(data if data is not None else store.get(key))
    if thumb is not None:
        store.put_at(tkey, thumb)
    return thumb


# --- EXIF GPS -------------------------------------------------------------------------------------
def exif_gps(data: bytes) -> tuple[float, float] | None:
    """(lon, lat) from a JPEG's EXIF GPS tags, or None when absent/unreadable."""
    try:
        return _exif_gps(data)
    except (struct.error, IndexError, ValueError, ZeroDivisionError):
        return None


def _exif_gps(data: bytes):
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        size = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\0\0":
            return _tiff_gps(data[i + 10:i + 2 + size])
        if marker in (0xDA, 0xD9):  # start of scan / end: no EXIF before the image data
            return None
        i += 2 + size
    return None


def _tiff_gps(t: bytes):
    end = {b"II": "<", b"MM": ">"}.get(t[:2])
    if end is None:
        return None

    def u16(o):
        return struct.unpack(end + "H", t[o:o + 2])[0]

    def u32(o):
        return struct.unpack(end + "I", t[o:o + 4])[0]

    def entries(ifd):
        n = u16(ifd)
        for k in range(n):
            e = ifd + 2 + 12 * k
            yield u16(e), u16(e + 2), u32(e + 4), e + 8

    gps_ifd = None
    for tag, _typ, _count, val in entries(u32(4)):
        if tag == 0x8825:
            gps_ifd = u32(val)
    if gps_ifd is None:
        return None
    tags = {}
    for tag, typ, count, val in entries(gps_ifd):
        if typ == 2:  # ASCII ref, fits in the value field
            tags[tag] = t[val:val + 1].decode()
        elif typ == 5 and count == 3:  # three RATIONALs at an offset
            off = u32(val)
            nums = [u32(off + 8 * k) / u32(off + 8 * k + 4) for k in range(3)]
            tags[tag] = nums[0] + nums[1] / 60 + nums[2] / 3600
    if not all(k in tags for k in (1, 2, 3, 4)):
        return None
    lat = tags[2] * (-1 if tags[1] == "S" else 1)
    lon = tags[4] * (-1 if tags[3] == "W" else 1)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lon, lat


def save_all(conn, incident: dict, blobs: list[tuple[str, str, bytes]], user, note: str = "") -> dict:
    """Store checked uploads for ``incident``, one ``attach`` event listing them; returns what was stored."""
    from sqlalchemy import text

    from gridserver.incidents.workflow import log_event

    store = storage()
    saved = []
    for filename, kind, data in blobs:
        key = store.put(data)
        sha = key.split("/")[-1]
        thumb = ensure_thumbnail(store, sha, kind, data)
        gps = exif_gps(data) if kind == "image/jpeg" else None
        dist = None
        if gps is not None:
            dist = conn.execute(text(
                "SELECT ST_Distance(ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 4547), "
                "ST_Transform(geom, 4547)) FROM incidents WHERE id = :id"),
                {"x": gps[0], "y": gps[1], "id": incident["id"]}).scalar()
        aid = conn.execute(text(
            """INSERT INTO incident_attachments (incident_id, filename, content_type, size, sha256, storage_key,
                                                 exif_lon, exif_lat, uploader)
               VALUES (:i, :f, :c, :s, :h, :k, :x, :y, :u) RETURNING id"""),
            {"i": incident["id"], "f": filename[:200], "c": kind, "s": len(data), "h": sha, "k": key,
             "x": gps[0] if gps else None, "y": gps[1] if gps else None, "u": user.username}).scalar_one()
        saved.append({"id": aid, "filename": filename, "content_type": kind, "size": len(data),
                      "url": f"/api/v1/incidents/{incident['id']}/attachments/{aid}",
                      "thumbnail": thumbnail_url(incident["id"], aid) if thumb is not None else None,
                      "exif_gps": {"lon": gps[0], "lat": gps[1], "distance_m": round(float(dist), 1)} if gps else None})
    event_id = log_event(conn, incident["id"], "attach", actor=user, from_status=incident["status"],
                         to_status=incident["status"], note=note, attachments=[a["id"] for a in saved])
    conn.execute(text("UPDATE incident_attachments SET event_id = :e WHERE id = ANY(:ids)"),
                 {"e": event_id, "ids": [a["id"] for a in saved]})
    return {"incident_id": incident["id"], "event_id": event_id, "attachments": saved}
