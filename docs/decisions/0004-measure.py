# Measures attachment uploads and downloads through one release node, local files or S3
# (moto), for docs/decisions/0004-attachment-downloads-through-the-node.md:
#   cargo build --release -p server && python3 docs/decisions/0004-measure.py local|s3
# Needs python3 with moto[server] (and its boto3) for s3.
import json, os, subprocess, sys, time, urllib.request, socket, tempfile, threading
BIN = os.environ.get("CHAT_SERVER", "target/release/chat-server")
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def req(method, url, body=None, token=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r = urllib.request.Request(url, data=data, method=method)
    if data is not None: r.add_header("content-type", ctype)
    if token: r.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(r, timeout=120) as resp:
        b = resp.read()
        return resp.status, (json.loads(b) if b and resp.headers.get("content-type","").startswith("application/json") else b)
def run(mode):
    port = free(); d = tempfile.mkdtemp()
    env = dict(os.environ, CHAT_HTTP__ADDR=f"127.0.0.1:{port}", CHAT_DATA__DIR=d, CHAT_LOG__LEVEL="warn",
               CHAT_AUTH__ARGON2_MEMORY_KIB="64", CHAT_AUTH__ARGON2_ITERATIONS="1")
    moto = None
    if mode == "s3":
        mport = free()
        moto = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main(['-H','127.0.0.1','-p','%d'])" % mport], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try: socket.create_connection(("127.0.0.1", mport), 0.2).close(); break
            except OSError: time.sleep(0.1)
        req("PUT", f"http://127.0.0.1:{mport}/bench")
        env.update(CHAT_BLOBS__URL="s3://bench", CHAT_BLOBS__ENDPOINT=f"http://127.0.0.1:{mport}", CHAT_BLOBS__REGION="us-east-1",
                   CHAT_BLOBS__ACCESS_KEY_ID="test", CHAT_BLOBS__SECRET_ACCESS_KEY="test", CHAT_BLOBS__ALLOW_HTTP="true")
    srv = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try: req("GET", base + "/healthz"); break
        except Exception: time.sleep(0.1)
    users = []
    for n in ("a", "b"):
        _, r = req("POST", base + "/api/v1/auth/register", {"email": f"{n}@x.io", "password": "correct horse battery", "display_name": n})
        users.append(r)
    ta, tb = users[0]["access_token"], users[1]["access_token"]
    _, conv = req("POST", base + "/api/v1/conversations", {"type": "direct", "participant_ids": [users[1]["user"]["id"]]}, ta)
    size = 40 * 1024 * 1024
    blob = b"%PDF-1.4\n" + os.urandom(size - 9)
    t0 = time.time()
    _, ticket = req("POST", base + "/api/v1/attachments/upload-url", {"conversation_id": conv["id"], "filename": "big.pdf", "mime_type": "application/pdf", "size": size}, ta)
    up = ticket["upload_url"]; up = base + up if up.startswith("/") else up
    req("PUT", up, raw=blob, ctype="application/pdf")
    t1 = time.time()
    _, att = req("POST", base + f"/api/v1/attachments/{ticket['attachment_id']}/confirm", {}, ta)
    t2 = time.time()
    req("POST", base + f"/api/v1/conversations/{conv['id']}/messages", {"content": "", "attachment_ids": [att["id"]]}, ta)
    _, hist = req("GET", base + f"/api/v1/conversations/{conv['id']}/messages", token=tb)
    url = base + hist[0]["attachments"][0]["url"]
    def rss(): return int(open(f"/proc/{srv.pid}/status").read().split("VmRSS:")[1].split()[0])
    base_rss = rss(); peak = [base_rss]
    stop = False
    def watch():
        while not stop:
            peak[0] = max(peak[0], rss()); time.sleep(0.01)
    w = threading.Thread(target=watch); w.start()
    times = []
    for _ in range(5):
        s = time.time(); _, body = req("GET", url); times.append(time.time() - s); assert len(body) == size
    stop = True; w.join()
    out = {"mode": mode, "size_mib": size // 2**20, "upload_s": round(t1 - t0, 3), "confirm_s": round(t2 - t1, 3),
           "download_s_median": round(sorted(times)[2], 3), "download_mib_s": round(size / 2**20 / sorted(times)[2], 1), "peak_rss_mib": round(peak[0] / 1024, 1), "rss_before_mib": round(base_rss / 1024, 1)}
    if mode == "s3":
        import boto3
        s3 = boto3.client("s3", endpoint_url=env["CHAT_BLOBS__ENDPOINT"], aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        direct = s3.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": f"attachments/{att['id']}/file"}, ExpiresIn=300)
        dt = []
        for _ in range(5):
            s = time.time(); _, body = req("GET", direct); dt.append(time.time() - s); assert len(body) == size
        out["presigned_direct_s_median"] = round(sorted(dt)[2], 3)
        out["presigned_direct_mib_s"] = round(size / 2**20 / sorted(dt)[2], 1)
    srv.terminate(); srv.wait()
    if moto: moto.terminate()
    print(json.dumps(out))
run(sys.argv[1])
