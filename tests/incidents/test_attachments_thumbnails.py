"""Photo thumbnails (issue 10 "Duplicates"): made when a photo is stored, upright by EXIF orientation,
without EXIF (no GPS), served with the attachment's access rules, made on first request for photos
stored before, and linked from duplicate candidates. Real images (Pillow), real HTTP."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from gridserver.incidents import attachments


def _jpeg(w=1200, h=600, orientation: int | None = 6, gps=(113.2551, 23.146)) -> bytes:
    im = Image.new("RGB", (w, h), (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, w // 4, h))  # a blue band on the left: shows where the image went
    ex = Image.Exif()
    if orientation:
        ex[0x0112] = orientation
    if gps:
        lon, lat = gps
        ex[0x8825] = {1: "N", 2: (float(int(lat)), (lat % 1) * 60, 0.0), 3: "E", 4: (float(int(lon)), (lon % 1) * 60, 0.0)}
    out = io.BytesIO()
    im.save(out, "JPEG", exif=ex.tobytes(), quality=90)
    return out.getvalue()


def _png_rgba(w=500, h=500) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (w, h), (0, 200, 0, 128)).save(out, "PNG")
    return out.getvalue()


MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200


@pytest.fixture
def citizen_incident(http, auth, make_user, small_city):
    citizen = make_user("citizen")
    r = http.post("/api/v1/incidents", headers=auth(citizen),
                  json={"lon": 113.255, "lat": 23.146, "category": "city_appearance_01", "description": "路边垃圾堆放"})
    assert r.status_code == 201, r.text
    return citizen, r.json()


def _upload(http, auth, who, inc_id, *files):
    r = http.post(f"/api/v1/incidents/{inc_id}/attachments", headers=auth(who),
                  files=[("files", f) for f in files])
    assert r.status_code == 201, r.text
    return r.json()["attachments"]


def test_photo_gets_an_upright_thumbnail_without_exif(http, auth, citizen_incident):
    citizen, inc = citizen_incident
    photo = _jpeg()
    assert attachments.exif_gps(photo) is not None  # the original carries GPS …
    a = _upload(http, auth, citizen, inc["id"], ("scene.jpg", photo, "image/jpeg"))[0]
    assert a["thumbnail"] == f"/api/v1/incidents/{inc['id']}/attachments/{a['id']}/thumbnail"
    sha = hashlib.sha256(photo).hexdigest()
    assert attachments.storage().get(attachments.thumbnail_key(sha))  # made when the photo was stored
    r = http.get(a["thumbnail"], headers=auth(citizen))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"].startswith("private")
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.format == "JPEG" and max(thumb.size) <= attachments.THUMB_SIZE
    assert thumb.size == (160, 320)  # 1200×600 with orientation 6 (rotate 90° clockwise) → portrait
    assert thumb.convert("RGB").getpixel((80, 10))[2] > 150  # the left blue band is now on top
    assert len(thumb.getexif()) == 0 and b"Exif" not in r.content  # … the thumbnail carries none
    assert attachments.exif_gps(r.content) is None
    assert len(r.content) < len(photo)
    assert http.get(a["url"], headers=auth(citizen)).content == photo  # the original is untouched


def test_png_with_alpha_and_no_thumbnail_for_video(http, auth, citizen_incident):
    citizen, inc = citizen_incident
    png, video = _upload(http, auth, citizen, inc["id"], ("p.png", _png_rgba(), "image/png"), ("v.mp4", MP4, "video/mp4"))
    r = http.get(png["thumbnail"], headers=auth(citizen))
    assert r.status_code == 200
    im = Image.open(io.BytesIO(r.content))
    assert im.mode == "RGB" and im.size == (320, 320)
    assert video["thumbnail"] is None
    r = http.get(f"/api/v1/incidents/{inc['id']}/attachments/{video['id']}/thumbnail", headers=auth(citizen))
    assert r.status_code == 404 and r.json()["code"] == "no_thumbnail" and "video/mp4" in r.json()["detail"]
    r = http.get(f"/api/v1/incidents/{inc['id']}/attachments/999999999/thumbnail", headers=auth(citizen))
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_thumbnail_has_the_attachment_access_rules(http, auth, make_user, admin_token, citizen_incident):
    citizen, inc = citizen_incident
    a = _upload(http, auth, citizen, inc["id"], ("scene.jpg", _jpeg(gps=None), "image/jpeg"))[0]
    assert http.get(a["thumbnail"]).status_code == 401
    stranger = make_user("citizen")
    for url in (a["url"], a["thumbnail"]):  # another citizen may read neither
        assert http.get(url, headers=auth(stranger)).status_code == 403
    outside = make_user("grid_worker", "440104003002004")  # a grid in the other street
    assert http.get(a["thumbnail"], headers=auth(outside)).status_code == http.get(a["url"], headers=auth(outside)).status_code == 403
    assert http.get(a["thumbnail"], headers=auth(admin_token)).status_code == 200


def test_thumbnail_made_on_first_request_for_older_photos(http, auth, citizen_incident):
    citizen, inc = citizen_incident
    photo = _jpeg(900, 900, orientation=None, gps=None)
    a = _upload(http, auth, citizen, inc["id"], ("old.jpg", photo, "image/jpeg"))[0]
    store = attachments.storage()
    path = store.root / attachments.thumbnail_key(hashlib.sha256(photo).hexdigest())
    path.unlink()  # as a photo stored before thumbnails existed
    r = http.get(a["thumbnail"], headers=auth(citizen))
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (320, 320)
    assert path.read_bytes() == r.content  # stored for the next request


def test_undecodable_image_is_stored_but_has_no_thumbnail(http, auth, citizen_incident):
    citizen, inc = citizen_incident
    broken = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + b"\x13" * 500  # JPEG magic, no image
    a = _upload(http, auth, citizen, inc["id"], ("broken.jpg", broken, "image/jpeg"))[0]
    assert a["thumbnail"] is None
    r = http.get(f"/api/v1/incidents/{inc['id']}/attachments/{a['id']}/thumbnail", headers=auth(citizen))
    assert r.status_code == 404 and r.json()["code"] == "no_thumbnail"
    assert http.get(a["url"], headers=auth(citizen)).content == broken


def test_decompression_bomb_gets_no_thumbnail():
    out = io.BytesIO()
    Image.new("1", (10_000, 8_000)).save(out, "PNG")  # 80 M pixels in a few kB
    assert len(out.getvalue()) < attachments.MAX_IMAGE
    assert attachments.make_thumbnail(out.getvalue()) is None


def test_duplicate_candidates_link_the_thumbnail(http, auth, make_user, small_city):
    worker = make_user("grid_worker", "440104001001001")
    body = {"lon": 113.2552, "lat": 23.1462, "category": "city_appearance_01", "description": "中山路口垃圾桶满溢无人清理"}
    first = http.post("/api/v1/incidents", headers=auth(worker), json=body).json()
    a = _upload(http, auth, worker, first["id"], ("scene.jpg", _jpeg(), "image/jpeg"))[0]
    r = http.post("/api/v1/duplicates/check", headers=auth(worker),
                  json={**body, "lon": 113.25525, "description": "中山路口垃圾桶满了没人清理"})
    assert r.status_code == 200, r.text
    cand = next(c for c in r.json()["candidates"] if c["id"] == first["id"])
    assert cand["photo"] == a["thumbnail"]
    got = http.get(cand["photo"], headers=auth(worker))
    assert got.status_code == 200 and Image.open(io.BytesIO(got.content)).size == (160, 320)
