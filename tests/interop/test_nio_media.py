"""Authenticated media (Matrix v1.11) through matrix-nio: nio 0.26 uploads with
/_matrix/media/v3/upload and downloads and thumbnails through /_matrix/client/v1/media/*.
"""

import io
import secrets
import struct
import urllib.error
import urllib.request
import zlib

import pytest
from nio import (AsyncClient, AsyncClientConfig, DownloadError, MemoryDownloadResponse,
                 RegisterResponse, ResizingMethod, ThumbnailResponse, UploadResponse)

pytestmark = pytest.mark.asyncio

CONFIG = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, request_timeout=30)


def png(width: int, height: int, noise: bool = False) -> bytes:
    """A gradient PNG made with zlib alone (no imaging library needed). With `noise`, random
    low bits in every pixel keep zlib from shrinking it: about 80% of the raw size, like a photo."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x % 256, y % 256, 128)) for x in range(width)) for y in range(height))
    if noise:  # ORed in as big integers, which is fast; each row's filter-type byte stays 0
        low_bits = int.from_bytes((b"\x00" + b"\x3f" * (width * 3)) * height, "big")
        random_bits = int.from_bytes(secrets.token_bytes(len(rows)), "big")
        rows = (int.from_bytes(rows, "big") | random_bits & low_bits).to_bytes(len(rows), "big")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def registered_client(url: str) -> AsyncClient:
    client = AsyncClient(url, config=CONFIG)
    response = await client.register("nio_media_" + secrets.token_hex(4), "correct horse battery staple")
    assert isinstance(response, RegisterResponse), response
    return client


async def test_upload_download_and_thumbnail(homeserver_url):
    client = await registered_client(homeserver_url)
    try:
        data = secrets.token_bytes(300_000)
        uploaded, _ = await client.upload(io.BytesIO(data), content_type="application/pdf",
                                          filename="report.pdf", filesize=len(data))
        assert isinstance(uploaded, UploadResponse), uploaded
        assert uploaded.content_uri.startswith("mxc://")

        downloaded = await client.download(uploaded.content_uri)
        assert isinstance(downloaded, MemoryDownloadResponse), downloaded
        assert downloaded.body == data
        assert downloaded.content_type == "application/pdf"
        assert downloaded.filename == "report.pdf"

        image = png(400, 300)
        uploaded, _ = await client.upload(io.BytesIO(image), content_type="image/png",
                                          filename="gradient.png", filesize=len(image))
        assert isinstance(uploaded, UploadResponse), uploaded
        server_name, media_id = uploaded.content_uri[len("mxc://"):].split("/", 1)
        thumb = await client.thumbnail(server_name, media_id, 96, 96, method=ResizingMethod.crop)
        assert isinstance(thumb, ThumbnailResponse), thumb
        assert thumb.content_type == "image/png"
        assert thumb.body.startswith(b"\x89PNG")
        width, height = struct.unpack(">II", thumb.body[16:24])
        assert (width, height) == (96, 96)
    finally:
        await client.close()


async def test_new_media_is_frozen_on_the_legacy_endpoints(homeserver_url):
    client = await registered_client(homeserver_url)
    try:
        uploaded, _ = await client.upload(io.BytesIO(b"fresh"), content_type="text/plain", filesize=5)
        assert isinstance(uploaded, UploadResponse), uploaded
        server_and_id = uploaded.content_uri[len("mxc://"):]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{homeserver_url}/_matrix/media/v3/download/{server_and_id}")
        assert refused.value.code == 404
        # The authenticated endpoint still serves it; without a token it is refused.
        assert isinstance(await client.download(uploaded.content_uri), MemoryDownloadResponse)
        anonymous = AsyncClient(homeserver_url, config=CONFIG)
        try:
            refused = await anonymous.download(uploaded.content_uri)
            assert isinstance(refused, DownloadError), refused
            assert refused.transport_response.status == 401
        finally:
            await anonymous.close()
    finally:
        await client.close()
