#!/usr/bin/env python3
"""Media benchmark: Myelin vs a real Synapse (and nginx as the yardstick), in one run.

Figures (each server in a fresh temp dir on 127.0.0.1, measured one after the other):
  throughput  upload and download of 1, 10 and 100 MiB of random bytes with curl, one
              transfer at a time, median of 15 / 7 / 5 (MB = 10^6 bytes, curl's own clock)
  vs nginx    the 100 MiB download from nginx (sendfile on) serving the same file from the
              same disk: each server's rate as % of that
  vs sink     each upload size sent the same way to a sink that reads and discards the body
              (harness/sink.py): what curl can send here when the server does nothing, so
              a ceiling for any server. Also shown: the disk (the 100 MiB written from
              memory and fsynced) and sha256 of the 100 MiB in memory on one core (OpenSSL
              through hashlib), which a content-addressed store must compute for every upload
  thumbnails  upload of a 2000x2000 photo-like JPEG / PNG plus the first GET of a
              320x240 scale (or 96x96 crop) thumbnail until its body is in: median of 3
              fresh images (new bytes each, so no cache helps); Synapse makes its thumbnails
              while answering the upload (dynamic_thumbnails: false), Myelin on the first
              GET, so only the end-to-end time is compared
  RSS         peak VmRSS growth of the server (sampled every 20 ms) while 1 GiB is
              uploaded, then downloaded, measured first on a fresh server

A benchmark program, not a test: it prints figures and targets and exits 0 whatever they
are. Servers, curl and this script share the machine's cores, so compare figures from the
same run only.

    python3 bench/media.py [--myelin-bin PATH] [--markdown FILE] [--quick]
                           [--skip-synapse] [--skip-nginx] [--skip-myelin]
"""

import hashlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import common, curl, images, myelin, nginx, sink, synapse  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
MAX_UPLOAD = 2 * GiB  # both servers default to 50 MiB; the RSS test sends 1 GiB


class Plan:
    """What one run measures; --quick shrinks it to a smoke test of a minute or so."""

    def __init__(self, quick: bool):
        self.quick = quick
        # (bytes, repetitions): more repetitions where one transfer is over in milliseconds.
        self.sizes = ([(256 * 1024, 3), (1 * MiB, 3), (8 * MiB, 3)] if quick else
                      [(1 * MiB, 15), (10 * MiB, 7), (100 * MiB, 5)])
        self.image_side = 600 if quick else 2000
        self.image_reps = 1 if quick else 3
        self.big = 64 * MiB if quick else 1 * GiB
        # (query, label): the two thumbnails asked for, each after its own fresh upload.
        self.thumbs = [("width=320&height=240&method=scale", "320x240 scale"),
                       ("width=96&height=96&method=crop", "96x96 crop")]


def size_label(n: int) -> str:
    return f"{n // GiB} GiB" if n >= GiB and n % GiB == 0 else (
        f"{n // MiB} MiB" if n >= MiB else f"{n // 1024} KiB")


def mb_per_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def attempt(results: dict, key, fn, *args):
    """results[key] = fn(*args), or an error string: one failed part (a server refusing a
    size, a timeout) must not cost the figures of the others."""
    try:
        results[key] = fn(*args)
    except Exception as e:  # noqa: BLE001 - reported in the table, never hidden
        results[key] = {"error": f"{type(e).__name__}: {e}"[:300]}
        log(f"    ERROR {key}: {results[key]['error']}")


# ---------------------------------------------------------------- test data

def write_random(path: str, size: int) -> None:
    """`size` random bytes: incompressible, and no server can dedupe across sizes."""
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = min(left, 16 * MiB)
            f.write(os.urandom(chunk))
            left -= chunk


def make_data(workdir: str, plan: Plan) -> dict:
    """Payload files (one per size) and the test images, made once for every server."""
    data = {"payloads": {}, "images": {}}
    for size, reps in plan.sizes:
        # One file per repetition: an upload of bytes the server holds already is cheaper for
        # a content-addressed store, so "new content" and "the same again" are measured apart.
        paths = [os.path.join(workdir, f"payload-{size}-{i}.bin") for i in range(reps)]
        for path in paths:
            write_random(path, size)
        data["payloads"][size] = paths
    n = plan.image_reps * len(plan.thumbs)  # one fresh image per measured upload
    for fmt, seed in (("jpeg", 1), ("png", 2)):
        data["images"][fmt] = images.generate(os.path.join(workdir, "images"), fmt, n,
                                              plan.image_side, seed)
    for fmt, paths in data["images"].items():
        sizes = [os.path.getsize(p) for p in paths]
        log(f"  {len(paths)} {fmt} images {plan.image_side}x{plan.image_side}, "
            f"{min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB")
    return data


# ---------------------------------------------------------------- measurements

def throughput(srv, token: str, paths: list[str], size: int, reps: int) -> dict:
    """Median MB/s of `reps` uploads of new content (one file each), of `reps` uploads of
    the same file again, then of `reps` downloads of it."""
    ups = []
    for path in paths:
        mxc, seconds = curl.upload(srv.base_url, token, path)
        ups.append(seconds)
    again = []
    for _ in range(reps):
        mxc, seconds = curl.upload(srv.base_url, token, paths[0])
        again.append(seconds)
    url = curl.media_download_url(srv.base_url, mxc)
    curl.download(url, token)  # warm-up: first lookup of this media ID
    downs = []
    for _ in range(reps):
        got, seconds = curl.download(url, token)
        if got != size:
            raise RuntimeError(f"downloaded {got} bytes, expected {size}")
        downs.append(seconds)
    result = {"up": mb_per_s(size, statistics.median(ups)),
              "again": mb_per_s(size, statistics.median(again)),
              "down": mb_per_s(size, statistics.median(downs))}
    log(f"    {size_label(size)}: upload {result['up']:.0f} MB/s "
        f"(s: {', '.join(f'{t:.4f}' for t in ups)}), same again {result['again']:.0f} MB/s "
        f"(s: {', '.join(f'{t:.4f}' for t in again)}), download {result['down']:.0f} MB/s "
        f"(s: {', '.join(f'{t:.4f}' for t in downs)})")
    return result


def thumbnail_latency(srv, token: str, paths: list[str], content_type: str,
                      query: str) -> dict:
    """Median over `paths` of: POST the image, then GET the thumbnail until its last byte.

    http.client on one keep-alive connection, timed from the first byte sent: curl would add
    a process start per request to both servers' milliseconds. Each image is read into
    memory before the clock starts.
    """
    totals, uploads = [], []
    for path in paths:
        with open(path, "rb") as f:
            body = f.read()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
        auth = {"Authorization": f"Bearer {token}"}
        try:
            t0 = time.perf_counter()
            conn.request("POST", f"/_matrix/media/v3/upload?filename={os.path.basename(path)}",
                         body=body, headers={**auth, "Content-Type": content_type})
            resp = conn.getresponse()
            answer = resp.read()
            t1 = time.perf_counter()
            if resp.status != 200:
                raise RuntimeError(f"upload: HTTP {resp.status} {answer[:200]!r}")
            server, media_id = json.loads(answer)["content_uri"].removeprefix("mxc://").split("/")
            conn.request("GET", f"/_matrix/client/v1/media/thumbnail/{server}/{media_id}?{query}",
                         headers=auth)
            resp = conn.getresponse()
            thumb = resp.read()
            t2 = time.perf_counter()
            if resp.status != 200:
                raise RuntimeError(f"thumbnail: HTTP {resp.status} {thumb[:200]!r}")
        finally:
            conn.close()
        totals.append(t2 - t0)
        uploads.append(t1 - t0)
        log(f"    {os.path.basename(path)} {query}: upload {(t1 - t0) * 1000:.0f} ms + "
            f"thumbnail {(t2 - t1) * 1000:.0f} ms ({len(thumb)} B "
            f"{resp.getheader('Content-Type')})")
    return {"total": statistics.median(totals), "upload": statistics.median(uploads)}


def rss_growth(srv, token: str, big_path: str) -> dict:
    """Peak RSS growth of the server while `big_path` is uploaded, then downloaded."""
    size = os.path.getsize(big_path)
    with common.RssSampler(srv.pid) as up:
        mxc, up_seconds = curl.upload(srv.base_url, token, big_path, max_time=900)
    time.sleep(0.5)  # let the upload's last writes settle before the next baseline
    with common.RssSampler(srv.pid) as down:
        got, down_seconds = curl.download(curl.media_download_url(srv.base_url, mxc), token,
                                          max_time=900)
    if got != size:
        raise RuntimeError(f"downloaded {got} bytes, expected {size}")
    result = {"up": up.growth_kib, "up_hwm": up.hwm_growth_kib, "up_rate": mb_per_s(size, up_seconds),
              "down": down.growth_kib, "down_hwm": down.hwm_growth_kib,
              "down_rate": mb_per_s(size, down_seconds), "baseline": up.baseline_kib}
    log(f"    {size_label(size)} upload: RSS {up.baseline_kib / 1024:.1f} -> peak "
        f"{up.peak_kib / 1024:.1f} MiB ({up.samples} samples, VmHWM growth "
        f"{(up.hwm_growth_kib or 0) / 1024:.1f} MiB), {result['up_rate']:.0f} MB/s")
    log(f"    {size_label(size)} download: RSS {down.baseline_kib / 1024:.1f} -> peak "
        f"{down.peak_kib / 1024:.1f} MiB ({down.samples} samples, VmHWM growth "
        f"{(down.hwm_growth_kib or 0) / 1024:.1f} MiB), {result['down_rate']:.0f} MB/s")
    return result


def measure_server(name: str, srv, data: dict, plan: Plan, workdir: str) -> dict:
    """Every figure of one running server. RSS first, on a fresh process, so memory the
    allocator kept from earlier phases cannot hide growth."""
    res: dict = {}
    token = synapse.register_user(srv.base_url, "bench", "bench-password")["access_token"]
    smallest = data["payloads"][plan.sizes[0][0]][0]
    # Warm-up: the first upload and download pay one-off costs (lazy set-up, first DB
    # statements) that belong to neither the RSS growth nor the throughput.
    mxc, _ = curl.upload(srv.base_url, token, smallest)
    curl.download(curl.media_download_url(srv.base_url, mxc), token)

    if data.get("rss_test"):
        big = os.path.join(workdir, "big.bin")
        log(f"  {name}: RSS during a {size_label(plan.big)} upload and download")
        write_random(big, plan.big)
        try:
            attempt(res, "rss", rss_growth, srv, token, big)
        finally:
            os.remove(big)  # the disk needs the room for the server's copies

    log(f"  {name}: throughput")
    for size, reps in plan.sizes:
        attempt(res, ("tp", size), throughput, srv, token, data["payloads"][size], size, reps)

    log(f"  {name}: upload + first thumbnail")
    for fmt, content_type in (("png", "image/png"), ("jpeg", "image/jpeg")):
        paths = data["images"][fmt]
        for i, (query, label) in enumerate(plan.thumbs):
            chunk = paths[i * plan.image_reps:(i + 1) * plan.image_reps]
            attempt(res, ("thumb", fmt, label), thumbnail_latency, srv, token, chunk,
                    content_type, query)
    return res


def measure_nginx(root: str, path: str, size: int, reps: int) -> dict:
    """Median MB/s of `reps` downloads of the file from nginx (after one warm-up)."""
    with nginx.Nginx(root) as web:
        url = f"{web.base_url}/{os.path.basename(path)}"
        curl.download(url)
        times = [curl.download(url)[1] for _ in range(reps)]
        log(f"    nginx {web.version} {size_label(size)}: "
            f"{mb_per_s(size, statistics.median(times)):.0f} MB/s "
            f"(s: {', '.join(f'{t:.4f}' for t in times)})")
        return {"down": mb_per_s(size, statistics.median(times)), "version": web.version}


def measure_sink(data: dict, plan: Plan) -> dict:
    """Median MB/s of uploading each size's new-content files to the body sink."""
    rates = {}
    with sink.Sink() as s:
        curl.post_file(s.url, data["payloads"][plan.sizes[0][0]][0])  # warm-up
        for size, _ in plan.sizes:
            times = [curl.post_file(s.url, path)[1] for path in data["payloads"][size]]
            rates[size] = mb_per_s(size, statistics.median(times))
            log(f"    sink {size_label(size)}: {rates[size]:.0f} MB/s "
                f"(s: {', '.join(f'{t:.4f}' for t in times)})")
    return {"up": rates}


def measure_sha256(path: str, reps: int) -> dict:
    """Median MB/s of sha256 over the file's bytes in memory, on one core."""
    with open(path, "rb") as f:
        payload = f.read()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        hashlib.sha256(payload).digest()
        times.append(time.perf_counter() - t0)
    rate = mb_per_s(len(payload), statistics.median(times))
    log(f"    sha256 {size_label(len(payload))} in memory: {rate:.0f} MB/s")
    return {"rate": rate}


def measure_disk(path: str, workdir: str, reps: int) -> dict:
    """Median MB/s of writing the file's bytes (from memory) to a new file on the same disk
    and fsyncing it: the yardstick for an upload that is durable when answered (Myelin
    fsyncs each upload before its 200; Synapse does not)."""
    with open(path, "rb") as f:
        payload = f.read()
    target = os.path.join(workdir, "disk-yardstick.bin")
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        with open(target, "wb") as f:
            for i in range(0, len(payload), MiB):
                f.write(payload[i:i + MiB])
            f.flush()
            os.fsync(f.fileno())
        times.append(time.perf_counter() - t0)
        os.remove(target)
    rate = mb_per_s(len(payload), statistics.median(times))
    log(f"    disk write+fsync {size_label(len(payload))}: {rate:.0f} MB/s "
        f"(s: {', '.join(f'{t:.4f}' for t in times)})")
    return {"up": rate}


# ---------------------------------------------------------------- the table

def build_rows(my: dict | None, sy: dict | None, ng: dict | None, disk: dict | None,
               sk: dict | None, sha: dict | None, plan: Plan) -> list[list[str]]:
    """Metric | Myelin | Synapse | yardstick | ratio | target | verdict."""

    def get(res, key, field):
        """(display-ready value or None, error text or None)."""
        if res is None:
            return None, None
        entry = res.get(key)
        if entry is None:
            return None, None
        if "error" in entry:
            return None, "error"
        return entry.get(field), None

    def cell(res, key, field, fmt):
        value, err = get(res, key, field)
        return err or ("-" if value is None else fmt(value))

    def row(label, m, s, n="", ratio="", target="", ok=None):
        return [label, m, s, n, ratio, target, "" if ok is None else ("PASS" if ok else "MISS")]

    rows = []
    mbs = lambda v: f"{v:,.0f} MB/s"  # noqa: E731
    ms = lambda v: f"{v * 1000:,.0f} ms"  # noqa: E731
    mib = lambda v: f"{v / 1024:.1f} MiB"  # noqa: E731

    largest = plan.sizes[-1][0]
    for direction, verb, target in (("up", "upload of new content", 3.0),
                                    ("again", "upload of the same content again", None),
                                    ("down", "download", 2.0)):
        for size, reps in plan.sizes:
            key = ("tp", size)
            m, _ = get(my, key, direction)
            s, _ = get(sy, key, direction)
            yardsticks = []
            if size == largest and direction == "down" and ng and "down" in ng:
                yardsticks.append("nginx " + mbs(ng["down"]))
            if direction == "up" and sk and size in sk.get("up", {}):
                yardsticks.append("sink " + mbs(sk["up"][size]))
            if size == largest and direction == "up" and disk and "up" in disk:
                yardsticks.append("disk " + mbs(disk["up"]))
            if size == largest and direction == "up" and sha and "rate" in sha:
                yardsticks.append("sha256 " + mbs(sha["rate"]))
            yardstick = "; ".join(yardsticks)
            rows.append(row(f"{verb} {size_label(size)}, median of {reps}",
                            cell(my, key, direction, mbs), cell(sy, key, direction, mbs),
                            yardstick, f"{m / s:.1f}x" if m and s else "-",
                            f">= {target:g}x Synapse" if target else "",
                            (m / s >= target) if (m and s and target) else None))

    # Myelin and Synapse as a share of nginx on the largest download.
    key = ("tp", largest)
    m, _ = get(my, key, "down")
    s, _ = get(sy, key, "down")
    n = ng.get("down") if ng else None
    pct = lambda v: f"{100 * v / n:.0f}%" if v and n else "-"  # noqa: E731
    rows.append(row(f"{size_label(largest)} download as % of nginx", pct(m), pct(s),
                    "100%" if n else ("error" if ng else "-"), "",
                    "Myelin >= 85%", (m >= 0.85 * n) if m and n else None))

    for fmt, name, target in (("png", "PNG", 5.0), ("jpeg", "JPEG", 3.6)):
        for _, label in plan.thumbs:
            key = ("thumb", fmt, label)
            m, _ = get(my, key, "total")
            s, _ = get(sy, key, "total")
            rows.append(row(f"{name} {plan.image_side}px: upload + first {label}, "
                            f"median of {plan.image_reps}",
                            cell(my, key, "total", ms), cell(sy, key, "total", ms), "",
                            f"{s / m:.1f}x faster" if m and s else "-",
                            f">= {target:g}x Synapse", (s / m >= target) if m and s else None))
            rows.append(row("  of which the upload", cell(my, key, "upload", ms),
                            cell(sy, key, "upload", ms)))

    for direction, verb in (("up", "upload"), ("down", "download")):
        m, _ = get(my, "rss", direction)
        s, _ = get(sy, "rss", direction)
        rows.append(row(f"RSS growth during a {size_label(plan.big)} {verb}",
                        cell(my, "rss", direction, mib), cell(sy, "rss", direction, mib), "",
                        rss_ratio(m, s),
                        "Myelin < 32 MiB", (m < 32 * 1024) if m is not None else None))
        rows.append(row("  kernel VmHWM growth (cross-check)",
                        cell(my, "rss", direction + "_hwm", mib),
                        cell(sy, "rss", direction + "_hwm", mib)))
        rows.append(row(f"  {verb} rate meanwhile",
                        cell(my, "rss", direction + "_rate", mbs),
                        cell(sy, "rss", direction + "_rate", mbs)))
    return rows


def rss_ratio(m: int | None, s: int | None) -> str:
    """How Myelin's growth compares; growths of a few MiB are allocator noise, not a ratio."""
    if m is None or s is None:
        return "-"
    if max(m, s) < 4 * 1024:
        return "both < 4 MiB"
    return f"{s / max(m, 1):.0f}x less" if m <= s else f"{m / max(s, 1):.1f}x more"


def render(rows, markdown: bool) -> str:
    head = ["metric", "Myelin", f"Synapse {synapse.SYNAPSE_VERSION}", "yardstick",
            "ratio", "target", "verdict"]
    return common.render_table(head, rows, markdown)


def header_lines(binary: str | None, plan: Plan, nginx_version: str, load: list) -> list[str]:
    return [
        common.machine_line(binary, plan.quick),
        f"Transfers: curl {curl.version()} (-T FILE / -o /dev/null, HTTP/1.1, one at a time, "
        "curl's time_total), MB = 10^6 bytes; ratio = Myelin / Synapse.",
        "Thumbnails: Python http.client on one connection, upload start to last thumbnail byte; "
        "Synapse thumbnails at upload time (dynamic_thumbnails: false).",
        "RSS: VmRSS every 20 ms, peak minus the value just before the transfer; "
        "both servers with a 2 GiB upload limit.",
        f"Yardsticks: nginx {nginx_version} (sendfile on) serving the same file from the same "
        "disk; sink = the same uploads to a server that reads and discards the body "
        "(bench/harness/sink.py); disk = write from memory + fsync of the same bytes (Python, "
        "1 MiB writes); sha256 = hashlib over the bytes in memory, one core.",
        common.load_note(load),
    ]


# ---------------------------------------------------------------- main

def main() -> None:
    ap = common.bench_arguments(
        __doc__, "small sizes (256 KiB-8 MiB, 600px images, 64 MiB RSS test): a smoke test")
    ap.add_argument("--skip-nginx", action="store_true")
    args = ap.parse_args()
    plan = Plan(args.quick)

    curl.ensure_installed()
    binary = common.prepare_servers(args, log)
    nginx_version = "-"
    if not args.skip_nginx:
        nginx_version = nginx.version(nginx.ensure_installed())

    my = sy = ng = disk = sk = sha = None
    load = [os.getloadavg()[0]]
    workdir = tempfile.mkdtemp(prefix="bench-media-")
    try:
        log(f"[bench] test data in {workdir}")
        data = make_data(workdir, plan)
        # Room for the big file, the server's copy of it and (Synapse) its request temp
        # file, plus the smaller uploads: skip the RSS part rather than fill the disk.
        free = shutil.disk_usage(workdir).free
        if free > 3 * plan.big + 2 * GiB:
            data["rss_test"] = True
        else:
            log(f"[bench] only {free / GiB:.1f} GiB free: skipping the RSS test")

        if not args.skip_myelin:
            log(f"Myelin: {binary}")
            env = {"MYELIN_REGISTRATION__ENABLED": "true",
                   "MYELIN_MEDIA__MAX_UPLOAD_SIZE": str(MAX_UPLOAD)}
            with myelin.Myelin(binary, extra_env=env) as srv:
                my = measure_server("Myelin", srv, data, plan, workdir)
        if not args.skip_synapse:
            log(f"Synapse {synapse.SYNAPSE_VERSION}")
            with synapse.Synapse(extra_config={"max_upload_size": MAX_UPLOAD}) as srv:
                sy = measure_server("Synapse", srv, data, plan, workdir)
        if not args.skip_nginx:
            size, reps = plan.sizes[-1]
            log(f"nginx {nginx_version}")
            ng = {}
            path = data["payloads"][size][0]
            attempt(ng, "r", measure_nginx, os.path.dirname(path), path, size, reps)
            ng = ng["r"]
        log("sink")
        sk = {}
        attempt(sk, "r", measure_sink, data, plan)
        sk = sk["r"]
        size, reps = plan.sizes[-1]
        log("disk")
        disk = {}
        attempt(disk, "r", measure_disk, data["payloads"][size][0], workdir, reps)
        disk = disk["r"]
        sha = {}
        attempt(sha, "r", measure_sha256, data["payloads"][size][0], reps)
        sha = sha["r"]
    finally:  # test data and any big file go, even on Ctrl-C
        shutil.rmtree(workdir, ignore_errors=True)

    load.append(os.getloadavg()[0])
    rows = build_rows(my, sy, ng, disk, sk, sha, plan)
    head = header_lines(binary, plan, nginx_version, load)
    print("\n" + "\n".join(head) + "\n\n" + render(rows, False))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("Media benchmark (" + head[0] + "):\n\n"
                    + "\n".join(f"- {h}" for h in head[1:]) + "\n\n"
                    + render(rows, True) + "\n")
        print(f"\nmarkdown written to {args.markdown}")


if __name__ == "__main__":
    main()
