#!/usr/bin/env python3
"""mkimage.py OUT.tar NAME:TAG ENTRYPOINT_JSON SRC:DEST [SRC:DEST...] -> docker-archive with one layer."""
# The node suite builds its images with this (hack/node-cluster.sh: the pause image from the static
# pause binary; test/e2e/harness/node.ts: busybox for the workloads): nothing is pulled.
import sys, tarfile, io, json, hashlib, os, time
out, ref, entry = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
files = [a.split(':', 1) for a in sys.argv[4:]]
lb = io.BytesIO()
with tarfile.open(fileobj=lb, mode='w', format=tarfile.PAX_FORMAT) as t:
    dirs = set()
    for src, dest in files:
        parts = dest.strip('/').split('/')[:-1]
        for i in range(1, len(parts) + 1):
            d = '/'.join(parts[:i])
            if d not in dirs:
                ti = tarfile.TarInfo(d); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 0; t.addfile(ti); dirs.add(d)
        ti = t.gettarinfo(os.path.realpath(src), dest.strip("/")); ti.mtime = 0; ti.uid = ti.gid = 0; ti.uname = ti.gname = ''
        with open(src, 'rb') as f: t.addfile(ti, f)
layer = lb.getvalue(); lsha = hashlib.sha256(layer).hexdigest()
cfg = {"architecture": "amd64", "os": "linux", "config": {"Entrypoint": entry, "Env": ["PATH=/bin"]},
       "rootfs": {"type": "layers", "diff_ids": ["sha256:" + lsha]}, "history": [{"created_by": "mkimage.py"}]}
cb = json.dumps(cfg).encode(); csha = hashlib.sha256(cb).hexdigest()
with tarfile.open(out, 'w') as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 0; t.addfile(ti, io.BytesIO(data))
    add(lsha + '/layer.tar', layer)
    add(csha + '.json', cb)
    add('manifest.json', json.dumps([{"Config": csha + '.json', "RepoTags": [ref], "Layers": [lsha + '/layer.tar']}]).encode())
print(out)
